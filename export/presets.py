"""The export's named choices: quality presets, precisions, expert encodings (light: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("int4", "int8", "fp32")
# int4: the builder's 4-bit blocks (scale from each block's largest value; smallest, fastest); int4-fitted: the same
# with each block's least-squares scale; int8: the MXFP4 experts held exactly (twice the bytes). See export/experts.py.
EXPERT_ENCODINGS = ("int4", "int4-fitted", "int8")
AUTO = "auto"  # the preset `oss-edge export` takes by default: chosen from the machine's memory


@dataclass(frozen=True)
class Quality:
    """A named trade between size and speed on one side and fidelity to the checkpoint on the other."""

    precision: str
    experts: str | None


QUALITIES = {
    # int4 everywhere: smallest and fastest
    "fast": Quality("int4", None),
    # int4 experts, int8 everywhere else: the experts are most of the bytes, the int8 rest removes most of the error
    "balanced": Quality("int8", "int4"),
    # the MXFP4 experts held exactly, int8 elsewhere: llama.cpp's MXFP4_MOE recipe (MXFP4 experts, Q8_0 elsewhere)
    "accurate": Quality("int8", "int8"),
    # exact experts, every other weight unquantized: equal to the checkpoint
    "exact": Quality("fp32", "int8"),
}
