"""Deep Dream and style-visualization explorer.

Everything here is importable and testable without Streamlit: ``models`` (network registry,
weights, hook-free features), ``images`` (decoding and validation), ``style`` (Gatys style
transfer), ``progress`` (events shared by the page and the CLI), ``plots`` (Plotly figures),
``cli`` (``python -m explorer``). ``ui`` holds the few Streamlit helpers the pages share.
"""

__version__ = "0.1.0"
