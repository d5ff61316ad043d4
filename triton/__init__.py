"""cvtriton_triton: Triton and ONNX specifics (model import, repository, local server, client).

Knows nothing about Azure or the UI. Installed as ``cvtriton_triton`` so it never shadows the
``triton`` compiler package that PyTorch installs.
"""
