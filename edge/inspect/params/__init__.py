"""Each tool's parameters: what a recipe may say to it, and nothing heavy.

One module per tool module. A parameter model names its tool (`impl`, imported only when
the tool is built), and imports no image, code or inference library (OpenCV, zxing-cpp,
ONNX Runtime, torch): validating a config file checks every tool's keys without
them, and a tool whose library is missing here is reported when the line builds it.
`edge.inspect.registry.TOOLS` lists them by recipe key.
"""
