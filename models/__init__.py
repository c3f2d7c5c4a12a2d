"""The learned parts of the world model: V (vae.py), M (mdnrnn.py), C (controller.py), and loading them."""
