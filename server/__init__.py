"""The cloud: LLM backends, augmentation prompts, parsing and filters."""
