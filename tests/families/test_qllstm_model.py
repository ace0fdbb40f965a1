"""QL-LSTM modules against an independent loop-form implementation of DESIGN.md's equations."""
import math

import pytest
import torch

from qlstm_edge import QLLSTM, QLLSTMCell, QLLSTMConfig, QLLSTMModel, count_parameters, lstm_parameter_count


def design_step(p, x, h, c):
    """DESIGN.md, QL-LSTM, written element by element with Python floats (independent of the module)."""
    H, D = len(h), len(x)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))
    xh = list(x) + list(h)
    u = [sum(p["weight"][j][k] * xh[k] for k in range(D + H)) + p["bias"][j] for j in range(H)]
    gs, gb, a = p["gate_scale"], p["gate_bias"], p["alpha"]
    h_new, c_new = [], []
    for j in range(H):
        i = sig(gs[0][j] * u[j] + gb[0][j])
        f = sig(gs[1][j] * u[j] + gb[1][j])
        g = math.tanh(gs[2][j] * u[j] + gb[2][j])
        o = sig(gs[3][j] * u[j] + gb[3][j])
        cj = f * c[j] + i * g
        c_new.append(cj)
        h_new.append(f * h[j] + (1 - f) * o * math.tanh(cj) + a * h[j])
    return h_new, c_new


def randomise(cell, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(cell.named_parameters()) + list(cell.named_buffers()):
            t.copy_(torch.randn(t.shape, generator=g) * (0.2 if name == "alpha" else 0.7))


@pytest.mark.parametrize("D,H,learn_alpha", [(3, 5, True), (8, 4, False), (1, 1, True), (16, 12, False)])
def test_cell_matches_design_equations(D, H, learn_alpha):
    cell = QLLSTMCell(D, H, alpha=0.3, learn_alpha=learn_alpha)
    assert isinstance(cell.alpha, torch.nn.Parameter) == learn_alpha
    randomise(cell, D * 100 + H)
    p = {k: v.tolist() for k, v in cell.state_dict().items()}
    B = 3
    x, h, c = torch.randn(B, D), torch.randn(B, H), torch.randn(B, H)
    with torch.no_grad():
        h1, c1 = cell(x, (h, c))
    for b in range(B):
        hr, cr = design_step(p, x[b].tolist(), h[b].tolist(), c[b].tolist())
        assert torch.max(torch.abs(h1[b].double() - torch.tensor(hr, dtype=torch.float64))) <= 1e-6
        assert torch.max(torch.abs(c1[b].double() - torch.tensor(cr, dtype=torch.float64))) <= 1e-6


def test_state_dict_names_and_shapes():
    cell = QLLSTMCell(6, 4)
    assert {k: tuple(v.shape) for k, v in cell.state_dict().items()} == {
        "weight": (4, 10), "bias": (4,), "gate_scale": (4, 4), "gate_bias": (4, 4), "alpha": ()}


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_stack_equals_hand_stepped_cells_and_continues(layers):
    torch.manual_seed(layers)
    rnn = QLLSTM(5, 7, num_layers=layers)
    x = torch.randn(2, 11, 5)
    with torch.no_grad():
        y, (h_n, c_n) = rnn(x)
        ref_lstm = torch.nn.LSTM(5, 7, num_layers=layers, batch_first=True)
        _, (lh, lc) = ref_lstm(x)
        assert h_n.shape == lh.shape and c_n.shape == lc.shape == (layers, 2, 7)
        inp = x
        for l, cell in enumerate(rnn.cells):
            h, c = torch.zeros(2, 7), torch.zeros(2, 7)
            outs = []
            for t in range(inp.shape[1]):
                h, c = cell(inp[:, t], (h, c))
                outs.append(h)
            inp = torch.stack(outs, 1)
            assert torch.equal(h_n[l], h) and torch.equal(c_n[l], c)
        assert torch.equal(y, inp)
        y1, s1 = rnn(x[:, :4])
        y2, s2 = rnn(x[:, 4:], s1)
        assert torch.equal(torch.cat([y1, y2], 1), y)
        assert torch.equal(s2[0], h_n) and torch.equal(s2[1], c_n)


def test_time_major_input():
    torch.manual_seed(0)
    a = QLLSTM(3, 4, batch_first=True)
    b = QLLSTM(3, 4, batch_first=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x.transpose(0, 1))[0].transpose(0, 1))


def test_bad_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"\[B, T, 3\]"):
        QLLSTM(3, 4)(torch.randn(2, 5, 4))


@pytest.mark.parametrize("D,H,L", [(32, 64, 1), (64, 128, 2), (10, 3, 3)])
def test_parameter_count(D, H, L):
    rnn = QLLSTM(D, H, num_layers=L)
    expected = sum(H * (d + H) + 9 * H + 1 for d in [D] + [H] * (L - 1))
    assert count_parameters(rnn) == expected
    fixed = QLLSTM(D, H, num_layers=L, learn_alpha=False)
    assert count_parameters(fixed) == expected  # a fixed alpha still counts: it is part of the model
    lstm = torch.nn.LSTM(D, H, num_layers=L)
    assert lstm_parameter_count(rnn) == sum(p.numel() for p in lstm.parameters())


def test_model_token_and_feature_inputs():
    tok = QLLSTMModel(QLLSTMConfig(hidden_size=8, num_layers=2, vocab_size=20, output_size=3))
    y, (h, c) = tok(torch.randint(0, 20, (4, 9)))
    assert y.shape == (4, 9, 3) and h.shape == (2, 4, 8)
    feat = QLLSTMModel(QLLSTMConfig(hidden_size=8, input_size=5, embed_size=6, output_size=1))
    y, _ = feat(torch.randn(2, 3, 5))
    assert y.shape == (2, 3, 1)


def test_config_errors():
    from qlstm_edge import ConfigError

    with pytest.raises(ConfigError, match="exactly one of vocab_size"):
        QLLSTMModel(QLLSTMConfig(hidden_size=8, vocab_size=10, input_size=3))
    with pytest.raises(ConfigError, match="hidden_size must be a positive integer"):
        QLLSTMConfig.from_dict({"hidden_size": 0, "vocab_size": 5})
    with pytest.raises(ConfigError, match="unknown field"):
        QLLSTMConfig.from_dict({"hidden_size": 4, "vocab_size": 5, "hiden": 3})


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = QLLSTMModel(QLLSTMConfig(hidden_size=16, vocab_size=4, output_size=2))
    x = torch.randint(0, 4, (32, 12))
    target = (x[:, 0] == 1).long()  # label depends on the first token: needs the recurrence
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x)[0][:, -1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in model.parameters())
