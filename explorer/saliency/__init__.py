"""Which regions of an image drive the network: the objectives a heatmap explains, Captum
attribution (saliency, guided backprop, integrated gradients, occlusion, Grad-CAM), exact fast
occlusion, and saliency-guided Gram style transfer."""
