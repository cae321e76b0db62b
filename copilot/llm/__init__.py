"""LLM backends: messages in, text (or a stream of text) out."""
