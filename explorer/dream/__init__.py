"""Deep Dream (Mordvintsev, Olah & Tyka 2015): settings, gradient ascent with octaves, jitter
and tiles, and the dream-zoom sequence."""
