"""The `inference.backend` section: one config class per backend, each naming its class.

Light (pydantic only), as Frigate keeps each detector's config with its plugin: validating
a Jetson config on a workstation does not import TensorRT; `edge.inference.base` imports
the chosen backend (`impl`) when a model is loaded on it, and says clearly if it cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

#: how a detector's raw boxes become detections, named on its card (`boxes`): non-maximum
#: suppression, or each region's boxes merged into one (`edge.inference.yolo.merge_regions`)
BoxRule = Literal["nms", "merge"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnnxBackend(_Strict):
    type: Literal["onnx"] = "onnx"
    impl: ClassVar[str] = "edge.inference.onnx:OnnxRuntimeBackend"
    threads: int = Field(2, ge=1)
    providers: list[str] | None = Field(
        None, description="None: best available (TensorRT, CUDA, CPU)"
    )
    int8: bool = True


class TensorRTBackend(_Strict):
    type: Literal["tensorrt"] = "tensorrt"
    impl: ClassVar[str] = "edge.inference.tensorrt:TensorRTBackend"
    int8: bool = Field(
        True, description="build from the INT8 Q/DQ file (the defects tools' precision: int8)"
    )
    fp16: bool = Field(True, description="FP16 for layers left in float (TensorRT 10)")
    cache_dir: Path | None = Field(
        None, description="engine cache (default: <records.state_dir>/engines, never the models)"
    )
    workspace_mb: int = Field(1024, ge=16)


BackendConfig = Annotated[Union[OnnxBackend, TensorRTBackend], Field(discriminator="type")]
