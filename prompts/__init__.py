"""Prompt templates (plain text files, loaded by llmrec.rank.prompts)."""
