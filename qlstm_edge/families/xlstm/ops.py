"""The xLSTM cell ops (B batch, T time, NH heads, DH = H / NH; sLSTM H hidden size; mLSTM DK, DV key and value
head sizes). Only the sLSTM's R is a quantizable matrix; the mLSTM ops hold no weight."""
from qlstm_edge.ops import OpSpec, Port

F32 = "float32"
SLSTM_WEIGHTS = (Port("R", F32, "[4, NH, DH, DH]"), Port("b", F32, "[4H]"))
MLSTM_CONSTANTS = (Port("q_scale", F32, "[]"), Port("k_scale", F32, "[]"), Port("eps", F32, "[]"))


def _slstm_state(suffix: str):
    return tuple(Port(f"{n}{suffix}", F32, "[B, H]") for n in "ycnm")


def _mlstm_state(suffix: str):
    return (Port(f"C{suffix}", F32, "[B, NH, DK, DV]"), Port(f"n{suffix}", F32, "[B, NH, DK]"),
            Port(f"m{suffix}", F32, "[B, NH, 1]"))


def _mlstm_inputs(t: str):
    return (Port("q", F32, f"[B, {t}NH, DK]"), Port("k", F32, f"[B, {t}NH, DK]"), Port("v", F32, f"[B, {t}NH, DV]"),
            Port("i", F32, f"[B, {t}NH]"), Port("f", F32, f"[B, {t}NH]"))


SLSTM_CELL = OpSpec(
    "sLSTMCell", (Port("x", F32, "[B, 4H]"), *_slstm_state(""), *SLSTM_WEIGHTS), _slstm_state("_out"),
    "One sLSTM step of the xlstm package (vanilla backend maths, element-wise m init).", matrices=("R",))
SLSTM_SEQUENCE = OpSpec(
    "sLSTMSequence", (Port("x", F32, "[B, T, 4H]"), *_slstm_state("0"), *SLSTM_WEIGHTS),
    (Port("Y", F32, "[B, T, H]"), *_slstm_state("_T")),
    "A chunk of sLSTM steps: a Scan over the gate pre-activations x [B, T, 4H].", matrices=("R",))
MLSTM_CELL = OpSpec(
    "mLSTMCell", (*_mlstm_inputs(""), *_mlstm_state(""), *MLSTM_CONSTANTS),
    (Port("h", F32, "[B, NH, DV]"), *_mlstm_state("_out")),
    "One mLSTM step of the xlstm package (stabilised matrix memory).", host=("q_scale", "k_scale", "eps"))
MLSTM_SEQUENCE = OpSpec(
    "mLSTMSequence", (*_mlstm_inputs("T, "), *_mlstm_state("0"), *MLSTM_CONSTANTS),
    (Port("H", F32, "[B, T, NH, DV]"), *_mlstm_state("_T")),
    "A chunk of mLSTM steps: a Scan over q, k, v [B, T, NH, D] and gates [B, T, NH].",
    host=("q_scale", "k_scale", "eps"))

OPS = [SLSTM_CELL, SLSTM_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE]
