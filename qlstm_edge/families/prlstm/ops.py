"""The PR-LSTM custom ops (B batch, T time, D input size, H hidden size, K stack levels, R = num_layers - 1 unary
refinements; weights input-major, x @ W)."""
from qlstm_edge.ops import OpSpec, Port

STACK = tuple(Port(n, "float32", "[B, K, H]") for n in ("block_h", "block_c", "prefix_h", "prefix_c"))
WEIGHTS = (Port("W_leaf", "float32", "[D, 3H]"), Port("b_leaf", "float32", "[3H]"),
           Port("W_merge", "float32", "[2H, 5H]"), Port("b_merge", "float32", "[5H]"),
           Port("W_unary", "float32", "[R, H, 4H]"), Port("b_unary", "float32", "[R, 4H]"))
MATRICES = ("W_leaf", "W_merge", "W_unary")
STATE_OUT = (*(Port(f"{p.name}_out", p.dtype, p.shape) for p in STACK), Port("count_out", "int64", "[B]"))


def _op(name: str, x: Port, y: Port, summary: str) -> OpSpec:
    return OpSpec(name, (x, *STACK, Port("count", "int64", "[B]"), *WEIGHTS), (y, *STATE_OUT), summary,
                  matrices=MATRICES, host=("count",), x_in_product=True)


STEP = _op("PRLSTMStep", Port("x", "float32", "[B, D]"), Port("y", "float32", "[B, H]"),
           "One PR-LSTM token: leaf, carries through the stack, one merge for the prefix (DESIGN.md, PR-LSTM).")
SEQUENCE = _op("PRLSTMSequence", Port("x", "float32", "[B, T, D]"), Port("Y", "float32", "[B, T, H]"),
               "A chunk of PR-LSTM tokens in O(log T) batched merge rounds, continuing the stack (DESIGN.md, PR-LSTM).")

OPS = [STEP, SEQUENCE]
