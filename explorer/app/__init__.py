"""The Streamlit side, and the only part of the explorer that imports Streamlit: the app shell,
cached networks, run widgets and page run state, pickers, Plotly figures, and what a session
keeps across pages."""
