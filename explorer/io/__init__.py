"""Files in and out: reading regular files of bounded size, decoding and checking images (an
allowlist of formats, limits on size, memory and time), the bundled samples, tensor <-> PIL,
atomic writes that never replace a special file or an input, encoders, and labelled grids."""
