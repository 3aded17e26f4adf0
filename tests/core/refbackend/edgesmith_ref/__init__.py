"""A pure-numpy reference backend used only by the core's own tests.

It exercises discovery, dispatch, manifests, atomic output and the Runner
timing code without any vendor stack: ``quantize`` rounds hf weights to a
grid (RTN, stored back as float32) and ``run`` is a plain numpy forward pass
of the llama/qwen2 architectures the test kit builds. It is a test double for
the plugin system, not a product backend.
"""
