"""Process-level settings for speed: CPU threads and allocator, memory format,
``torch.compile``, Lightning's expected warnings."""
