"""The web chat: a thin Gradio shell over `rag.Engine`."""
