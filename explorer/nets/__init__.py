"""The networks: the registry (each network's layers and its default layers for every use),
weights files, hook-free feature extraction (FeatureNet), layer arithmetic (receptive fields,
output shapes), Winograd convolutions on the CPU, and memory estimates of a run."""
