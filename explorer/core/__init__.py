"""The ground floor: what every other part of the explorer shares and that knows nothing of
images, networks or Streamlit: the names users choose from, settings and their checks,
progress events and the Run protocol, the run queue, compute devices and precision, where the
app's files are and whether torch and torchvision pair, and how much memory is free."""
