"""Where answers come from: an OpenAI-compatible server, or the offline docs assistant."""
