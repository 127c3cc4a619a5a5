"""Pure Keras/TensorFlow + NumPy code for TumorSite's segmenters.

Nothing below this package imports Django: the web app calls into ``ml`` from its services and
tasks only, so the web process never needs TensorFlow to render a page.
"""
