"""The QL-LSTM custom ops (B batch, T time, D input size, H hidden size; weights input-major, x @ W)."""
from qlstm_edge.ops import OpSpec, Port

WEIGHTS = (Port("W_x", "float32", "[D, H]"), Port("W_h", "float32", "[H, H]"), Port("bias", "float32", "[H]"),
           Port("gate_scale", "float32", "[4, H]"), Port("gate_bias", "float32", "[4, H]"),
           Port("alpha", "float32", "[]"))
MATRICES = ("W_x", "W_h")

CELL = OpSpec(
    "QLLSTMCell",
    (Port("x", "float32", "[B, D]"), Port("h", "float32", "[B, H]"), Port("c", "float32", "[B, H]"), *WEIGHTS),
    (Port("h_out", "float32", "[B, H]"), Port("c_out", "float32", "[B, H]")),
    "One QL-LSTM step (DESIGN.md, QL-LSTM).", matrices=MATRICES, x_in_product=True)

SEQUENCE = OpSpec(
    "QLLSTMSequence",
    (Port("x", "float32", "[B, T, D]"), Port("h0", "float32", "[B, H]"), Port("c0", "float32", "[B, H]"), *WEIGHTS),
    (Port("Y", "float32", "[B, T, H]"), Port("h_T", "float32", "[B, H]"), Port("c_T", "float32", "[B, H]")),
    "A chunk of QL-LSTM steps: one MatMul for the input projection, then a Scan.", matrices=MATRICES,
    x_in_product=True)

OPS = [CELL, SEQUENCE]
