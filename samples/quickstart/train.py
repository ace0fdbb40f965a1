"""Train the bundled quickstart model: QL-LSTM on the generated long-range sentiment task (~1 minute, CPU).

    python samples/quickstart/train.py            # writes samples/quickstart/model.safetensors
"""
from pathlib import Path

from qlstm_edge import QLLSTMConfig, QLLSTMModel, save_checkpoint
from qlstm_edge.datasets import long_range_sentiment
from qlstm_edge.training import TrainConfig, fit, seed_everything

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    seed_everything(0)
    x, y = long_range_sentiment(3000, length=64, seed=0)
    x_val, y_val = long_range_sentiment(500, length=64, seed=1)
    # alpha is fixed at 0: a learned alpha > 0 makes h = f h + (1-f) h~ + alpha h expansive once f saturates,
    # and this model must stream forever (docs/families.md, "QL-LSTM").
    model = QLLSTMModel(QLLSTMConfig(hidden_size=48, vocab_size=64, embed_size=16, output_size=2,
                                     alpha=0.0, learn_alpha=False))
    hist = fit(model, x, y, TrainConfig(epochs=8, lr=5e-3, seed=0), x_val, y_val)
    save_checkpoint(model, HERE / "model.safetensors")
    print(f"validation accuracy {hist.eval_metric[-1]:.3f}; wrote {HERE / 'model.safetensors'}")
