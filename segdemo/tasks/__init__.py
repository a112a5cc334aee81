"""Pure inference: numpy in, numpy or dataclasses out. Nothing here imports gradio."""
