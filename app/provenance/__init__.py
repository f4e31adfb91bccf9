"""Provenance: the deployment's signing certificate, and verifying a video's C2PA manifest and watermark."""
