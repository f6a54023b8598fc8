"""LLM backends shared by the LLM ranking methods: generation, next-token log-probabilities, token counts."""
