"""Tiny models of the xlstm package: the examples every family-wide test builds (registry.Example), and the
configuration helpers they share with the tests. The package is imported on first use: without it the examples
are still declared, and building one raises ImportError."""
import torch

from ...registry import Example

# xLSTMLarge's pure-PyTorch kernels (the package's defaults need Triton)
CPU_KERNELS = dict(chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                   step_kernel="native", mode="inference", return_last_states=True)


def perturb(model, seed=0, scale=0.1):
    """The package's init leaves recurrent and gate weights at zero; move every weight off its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def stack_kwargs(E=64, heads=4, slstm_at=(), blocks=2, context=64, conv=4, ffn_act="gelu", mlstm_heads=None):
    """xLSTMBlockStackConfig's arguments; the mLSTM blocks have ``mlstm_heads`` heads (default: ``heads``)."""
    import xlstm as x

    return dict(
        mlstm_block=x.mLSTMBlockConfig(mlstm=x.mLSTMLayerConfig(conv1d_kernel_size=conv, qkv_proj_blocksize=4,
                                                                num_heads=mlstm_heads or heads)),
        slstm_block=x.sLSTMBlockConfig(slstm=x.sLSTMLayerConfig(backend="vanilla", num_heads=heads,
                                                                conv1d_kernel_size=conv),
                                       feedforward=x.FeedForwardConfig(proj_factor=1.3, act_fn=ffn_act)),
        context_length=context, num_blocks=blocks, embedding_dim=E,
        slstm_at=slstm_at if slstm_at == "all" else list(slstm_at))


def stack(seed=0, **kw):
    import xlstm as x

    torch.manual_seed(seed)
    return perturb(x.xLSTMBlockStack(x.xLSTMBlockStackConfig(**stack_kwargs(**kw))), seed)


def lm(seed=0, vocab=50, **kw):
    import xlstm as x

    torch.manual_seed(seed)
    return perturb(x.xLSTMLMModel(x.xLSTMLMModelConfig(vocab_size=vocab, **stack_kwargs(**kw))), seed)


def large(seed=0, **kw):
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

    torch.manual_seed(seed)
    cfg = dict(embedding_dim=64, num_heads=2, num_blocks=2, vocab_size=50, **CPU_KERNELS)
    cfg.update(kw)
    return perturb(xLSTMLarge(xLSTMLargeConfig(**cfg)), seed)


EXAMPLES = {
    "xlstm-stack": (Example("xlstm-stack", "features",
                            lambda: stack(E=16, heads=2, slstm_at=(1,), blocks=2, conv=2)),),
    "xlstm-lm": (Example("xlstm-lm", "tokens", lambda: lm(E=16, heads=2, slstm_at=(0,), blocks=2, vocab=40)),),
    "xlstm-large": (Example("xlstm-large", "tokens",
                            lambda: large(embedding_dim=16, num_heads=2, num_blocks=1, vocab_size=40)),),
}
