"""Untrusted inputs: images and videos uploaded or fetched for image to video and edits; checked, stored."""
