"""The xLSTM cell ops (B batch, T time, NH heads, DH = H / NH; sLSTM H hidden size; mLSTM DK, DV key and value
head sizes) and block ops (E a block's embedding size; KS a block's conv kernel size; the LM's mLSTM block: I its
inner size, BS its q/k/v head size, NP = I / BS; the sLSTM block: E = NH DH, U its FFN's inner size). The sLSTM's R
and the block ops' matrices are quantizable; the mLSTM cell ops hold no weight."""
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


def _vec(name: str, n: str) -> Port:
    return Port(name, F32, f"[{n}]")


def _block_ops(name: str, inputs, state, out: str, step_summary: str, sequence_summary: str, **contract):
    """A block op and its Sequence form, the same contract over a step (x [B, E], state in, ``<state>_out``) and over
    a chunk (x [B, T, E], ``<state>0`` in, ``<state>_T`` out): ``inputs(x shape, state suffix)`` and ``state(suffix)``
    build the ports; the output ``out`` (its sequence form upper case) comes first."""
    step = OpSpec(name, inputs("[B, E]", ""), (Port(out, F32, "[B, E]"), *state("_out")), step_summary, **contract)
    sequence = OpSpec(f"{name}Sequence", inputs("[B, T, E]", "0"), (Port(out.upper(), F32, "[B, T, E]"),
                                                                    *state("_T")), sequence_summary, **contract)
    return step, sequence


def _large_block_inputs(x: str, state: str):
    """xLSTMLarge's block: its input, the mLSTM state, then its parameters (absent norm weights are ones, absent
    biases zeros) and scalars. W_qkvo's columns are q, k, v, o; W_if's i, f; W_up's gate, z (QK = NH DK, V = NH DV,
    U the FFN's inner size)."""
    return (Port("x", F32, x), *_mlstm_state(state),
            _vec("norm_mlstm_weight", "E"), _vec("norm_mlstm_bias", "E"),
            Port("W_qkvo", F32, "[E, 2QK + 2V]"), _vec("b_qkvo", "2QK + 2V"),
            Port("W_if", F32, "[E, 2NH]"), _vec("b_if", "2NH"),
            _vec("head_norm_weight", "V"), _vec("head_norm_bias", "V"),
            Port("W_out", F32, "[V, E]"), _vec("b_out", "E"),
            _vec("norm_ffn_weight", "E"), _vec("norm_ffn_bias", "E"),
            Port("W_up", F32, "[E, 2U]"), _vec("b_up", "2U"),
            Port("W_down", F32, "[U, E]"), _vec("b_down", "E"),
            Port("gate_soft_cap", F32, "[]"), Port("q_scale", F32, "[]"), Port("eps", F32, "[]"))


LARGE_BLOCK_MATRICES = ("W_qkvo", "W_if", "W_out", "W_up", "W_down")
LARGE_BLOCK_HOST = ("gate_soft_cap", "q_scale", "eps")
NORM_EPS = "norm_eps"  # the block ops' float attribute: the epsilon of their RMS norms and head norm
LARGE_BLOCK, LARGE_BLOCK_SEQUENCE = _block_ops(
    "xLSTMLargeBlock", _large_block_inputs, _mlstm_state, "y",
    "One step of an xLSTMLarge block: RMS norm, q/k/v/o and gate projections, soft-capped gates, the mLSTM cell, "
    "head norm, output gate, out_proj and residual, then RMS norm, gated SiLU FFN and residual (the float attribute "
    "norm_eps: the norms' epsilon; gate_soft_cap 0: no cap).",
    "A chunk of xLSTMLarge block steps: the block's projections over the chunk, the mLSTM recurrence as "
    "mLSTMSequence (attribute norm_eps as xLSTMLargeBlock).",
    matrices=LARGE_BLOCK_MATRICES, host=LARGE_BLOCK_HOST, attributes=(NORM_EPS,))


def _mlstm_block_state(suffix: str):
    """The LM mLSTM block's state in the package's layouts: its conv window, then C, n, m."""
    return (Port(f"conv{suffix}", F32, "[B, KS, I]"), Port(f"C{suffix}", F32, "[B, NH, DH, DH]"),
            Port(f"n{suffix}", F32, "[B, NH, DH, 1]"), Port(f"m{suffix}", F32, "[B, NH, 1, 1]"))


def _mlstm_block_inputs(x: str, state: str):
    """The LM's mLSTM block (xlstm's mLSTMBlock): its input, its state, then its parameters (absent biases are zeros)
    and scalars. W_up's columns are x_m, z; W_qkv stacks q's, k's and v's head-wise matrices [NP, BS, BS]; W_if's
    columns are i, f over the rows q, k, v."""
    return (Port("x", F32, x), *_mlstm_block_state(state),
            _vec("norm_weight", "E"), _vec("norm_bias", "E"),
            Port("W_up", F32, "[E, 2I]"), _vec("b_up", "2I"),
            Port("conv_weight", F32, "[KS, I]"), _vec("conv_bias", "I"),
            Port("W_qkv", F32, "[3, NP, BS, BS]"), _vec("b_qkv", "3I"),
            Port("W_if", F32, "[3I, 2NH]"), _vec("b_if", "2NH"),
            _vec("head_norm_weight", "I"), _vec("head_norm_bias", "I"), _vec("skip", "I"),
            Port("W_down", F32, "[I, E]"), _vec("b_down", "E"),
            Port("k_scale", F32, "[]"), Port("eps", F32, "[]"))


MLSTM_BLOCK_MATRICES = ("W_up", "W_qkv", "W_if", "W_down")
MLSTM_BLOCK_HOST = ("k_scale", "eps")
MLSTM_BLOCK, MLSTM_BLOCK_SEQUENCE = _block_ops(
    "mLSTMBlock", _mlstm_block_inputs, _mlstm_block_state, "y",
    "One step of the xLSTM LM's mLSTM block: layer norm, proj_up, causal conv1d and SiLU, head-wise q/k/v, i/f "
    "gates, the mLSTM cell, head norm, learnable skip, SiLU output gate, proj_down and residual (the float "
    "attribute norm_eps: the norms' epsilon).",
    "A chunk of the LM's mLSTM block steps: the block's projections and conv over the chunk, the mLSTM recurrence "
    "as mLSTMSequence (attribute norm_eps as mLSTMBlock).",
    matrices=MLSTM_BLOCK_MATRICES, host=MLSTM_BLOCK_HOST, attributes=(NORM_EPS,))


def _slstm_block_state(suffix: str):
    """The LM sLSTM block's state: its conv window, then the sLSTM's y, c, n, m."""
    return (Port(f"conv{suffix}", F32, "[B, KS, E]"), *(Port(f"{n}{suffix}", F32, "[B, E]") for n in "ycnm"))


def _slstm_block_inputs(x: str, state: str):
    """The LM's sLSTM block with its FFN: its input, its state, then its parameters (absent norm weights are ones,
    absent biases zeros). KS is the conv kernel size; E = NH DH. W_gates stacks the head-wise gate projections i, f
    (of the conv path), z, o (of the normed input); W_up's columns are gate, z (U the FFN's inner size)."""
    return (Port("x", F32, x), *_slstm_block_state(state),
            _vec("norm_weight", "E"), _vec("norm_bias", "E"), Port("conv_weight", F32, "[KS, E]"),
            _vec("conv_bias", "E"),
            Port("W_gates", F32, "[4, NH, DH, DH]"), _vec("b_gates", "4E"),
            Port("R", F32, "[4, NH, DH, DH]"), _vec("b", "4E"),
            _vec("group_norm_weight", "E"), _vec("group_norm_bias", "E"),
            _vec("ffn_norm_weight", "E"), _vec("ffn_norm_bias", "E"),
            Port("W_up", F32, "[E, 2U]"), _vec("b_up", "2U"), Port("W_down", F32, "[U, E]"), _vec("b_down", "E"))


SLSTM_BLOCK_MATRICES = ("W_gates", "R", "W_up", "W_down")
FFN_ACT = "ffn_act"  # the sLSTM block ops' string attribute: the FFN's activation
FFN_ACTIVATIONS = ("gelu", "relu", "relu^2", "sigmoid", "swish", "selu")  # xlstm's GatedFeedForward registry
SLSTM_BLOCK, SLSTM_BLOCK_SEQUENCE = _block_ops(
    "sLSTMBlock", _slstm_block_inputs, _slstm_block_state, "h",
    "One step of the xLSTM LM's sLSTM block and its FFN: layer norm, causal conv1d and SiLU, head-wise gate "
    "projections, the sLSTM cell, group norm and residual, then layer norm, gated FFN and residual (the float "
    "attribute norm_eps: the three norms' epsilon; the string attribute ffn_act: the FFN's activation, torch's "
    "definition of each).",
    "A chunk of sLSTM block steps: the conv and projections over the chunk, the recurrence as sLSTMSequence "
    "(attributes norm_eps and ffn_act as sLSTMBlock).",
    matrices=SLSTM_BLOCK_MATRICES, attributes=(NORM_EPS,), choices=((FFN_ACT, FFN_ACTIVATIONS),))

OPS = [SLSTM_CELL, SLSTM_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE, LARGE_BLOCK, LARGE_BLOCK_SEQUENCE, MLSTM_BLOCK,
       MLSTM_BLOCK_SEQUENCE, SLSTM_BLOCK, SLSTM_BLOCK_SEQUENCE]
