"""Test rig of the assistant: a fake OpenAI-compatible upstream, independent of Django.

It runs in a process of its own (``fake_upstream``), so tests of this process, live
servers and benchmarks can all point ``LLM_BASE_URL`` at it.
"""
