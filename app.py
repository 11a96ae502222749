"""Entry point: ``streamlit run app.py``.

Page config, navigation over ``pages/``, device and weights status, home text.
"""

import streamlit as st

from explorer.app import ui  # first: it shows a torch/torchvision mismatch as an error box

from explorer.nets import weights

st.set_page_config(page_title="Deep Dream & style explorer", page_icon="🎨", layout="wide")


def home() -> None:
    st.title("Deep Dream and style-visualization explorer")
    st.markdown(
        "See how a convolutional network sees pictures. **Style transfer** repaints a photo in the "
        "style of another image by matching the network's *Gram matrices* (Gatys et al., 2016). "
        "Pick a page on the left; every page runs on this machine and shows its progress as it goes."
    )
    st.markdown(
        "**Deep Dream** amplifies whatever a chosen layer (or class) already sees in a photo by gradient "
        "ascent on the image; **Layer activations** shows the feature maps one layer computes for a picture, "
        "channel by channel, and compares two pictures there; **Feature visualization** starts from noise and "
        "optimizes a picture that excites one channel, neuron or class as strongly as it can."
    )
    st.markdown(
        "**Style saliency** shows which regions of a style image drive the network (saliency, guided "
        "backprop, integrated gradients, occlusion, Grad-CAM heatmaps), and **Full vs guided Gram** runs "
        "style transfer twice, with the whole style image's Gram matrices and with only its most salient "
        "regions', and compares the results side by side."
    )
    st.markdown(
        "**What each layer keeps** starts from white noise and rebuilds a photo from one layer's features and a "
        "painting from the Gram matrices of growing sets of layers (Gatys et al., 2016, Fig. 1): shallow layers "
        "give the photo back, deep ones keep only its arrangement, and the Gram matrices keep a texture without it."
    )
    st.markdown(
        "**Parameter sweep** runs a grid of style transfers over one or two settings (content/style ratio, "
        "iterations, seed, starting image, style layers, optimizer) and shows them side by side with their losses; "
        "the style transfer page also blends up to six style images with weights."
    )
    untrained = ui.untrained_switch("home")
    st.subheader("This machine")
    st.write(f"Compute: {ui.device_summary()}.")
    rows = weights.weights_status()
    st.dataframe([ui.weights_row(r) for r in rows], hide_index=True)
    st.caption("Size: of the file found on this machine; for a network not downloaded yet, of torchvision's "
               "download (1 MiB = 2²⁰ bytes).")
    if not any(r["found"] for r in rows) and not untrained:
        st.info(
            "No pretrained weights are on this machine yet. With internet they download on first use "
            "(VGG19 is 548 MB), or run `python -m explorer weights download` beforehand. Without them, "
            "tick **Use untrained weights** in the sidebar (on the left) to try everything; results are then labelled."
        )
    elif untrained:
        st.caption("Untrained weights are on: every page uses them, and every result says so.")


pages = {
    "Explorer": [
        st.Page(home, title="Home", icon="🏠", default=True),
        # url paths = file names: Streamlit also indexes pages/ by file name, and a different
        # url_path makes a directly opened link show a "page not found" dialog first
        st.Page("pages/style_transfer.py", title="Style transfer", icon="🖌️"),
        st.Page("pages/deep_dream.py", title="Deep Dream", icon="🌀"),
        st.Page("pages/activations.py", title="Layer activations", icon="🔬"),
        st.Page("pages/feature_vis.py", title="Feature visualization", icon="🔭"),
        st.Page("pages/style_saliency.py", title="Style saliency", icon="🔥"),
        st.Page("pages/compare.py", title="Full vs guided Gram", icon="⚖️"),
        st.Page("pages/what_each_layer_keeps.py", title="What each layer keeps", icon="🧱"),
        st.Page("pages/sweep.py", title="Parameter sweep", icon="🧮"),
        st.Page("pages/augment.py", title="Dataset augmentation", icon="🗂️"),
    ],
}
ui.run_app(pages)
