"""Models: a vision encoder shared by the small and large VLM (language models come later)."""
