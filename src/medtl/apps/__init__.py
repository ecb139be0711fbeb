"""Applications on top of the library: ``medtl demo`` and the Gradio app."""
