"""Operator-level multiply-add counting: one public registry, layered over PyTorch's own.

Every operator the trace sees is, in this order:

1. **counted** by a formula registered here with :func:`register_macs` (CPU flash attention, the
   fused ``nn.MultiheadAttention`` path, RNN kernels, ``_trilinear``, FFTs, quantized conv/linear,
   ``torchvision::deform_conv2d``: ``netscope.operators.formulas``), or else by PyTorch's
   ``torch.utils.flop_counter.flop_registry``, looked up live so formulas torch adds later are seen
   (it counts 2 FLOPs per multiply-add);
2. **zero by convention** when it is on the documented list below (:data:`ZERO_BY_CONVENTION`, plus
   every operator PyTorch tags ``pointwise``, every view, and the in-place form ``name_`` of each operator on
   the list), or added with :func:`ignore_macs`: the convention
   torchvision's published ``_ops`` follow (pytorch/vision#6936 counts matrix products and
   convolutions only), so views, elementwise math, normalisation, softmax, losses, pooling, interpolation,
   indexing, RoI align and NMS cost nothing;
3. otherwise **uncounted**: the trace records it by name, with call counts and the layers where it
   ran, and the report says its multiply-add total is partial. Never a silent 0.

A formula is ``fn(*args, out_val=output, **kwargs) -> int`` over the operator's real arguments. It counts one
per multiply-add of the operator's own numbers; on complex ones (first argument or output complex) the
registry multiplies that by :data:`REAL_PER_COMPLEX` (4), so totals are in real multiply-adds throughout.
"""

from __future__ import annotations

import importlib
import operator
from typing import Callable, Dict, Mapping, Optional, Set, Tuple, Union

import torch
from torch.utils import flop_counter

from netscope.errors import MacFormulaError, OperatorRegistryError
from netscope.registry import Registry

MacFormula = Callable[..., int]  # (*args, out_val=..., **kwargs) -> multiply-adds
OpLike = Union[str, "torch._ops.OpOverloadPacket", "torch._ops.OpOverload"]

# Each group: why its operators cost no multiply-adds, then their qualified names ("namespace::name").
ZERO_BY_CONVENTION: Mapping[str, Tuple[str, Tuple[str, ...]]] = {
    "views": ("views, copies and tensor creation move or alias data", (
        "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::permute",
        "aten::transpose", "aten::t", "aten::expand", "aten::squeeze", "aten::unsqueeze", "aten::slice",
        "aten::select", "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::unbind", "aten::cat",
        "aten::stack", "aten::flatten", "aten::unflatten", "aten::contiguous", "aten::clone", "aten::detach",
        "aten::alias", "aten::as_strided", "aten::_to_copy", "aten::copy_", "aten::empty", "aten::empty_like",
        "aten::empty_strided", "aten::zeros", "aten::zeros_like", "aten::ones", "aten::ones_like", "aten::full",
        "aten::full_like", "aten::fill_", "aten::zero_", "aten::new_zeros", "aten::new_ones", "aten::new_empty",
        "aten::new_full", "aten::new_empty_strided", "aten::arange", "aten::linspace", "aten::lift_fresh",
        "aten::lift_fresh_copy", "aten::_local_scalar_dense", "aten::scalar_tensor", "aten::roll", "aten::flip",
        "aten::repeat", "aten::pad", "aten::constant_pad_nd", "aten::reflection_pad1d", "aten::reflection_pad2d",
        "aten::reflection_pad3d", "aten::replication_pad1d", "aten::replication_pad2d",
        "aten::replication_pad3d", "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::channel_shuffle",
        "aten::native_channel_shuffle", "aten::im2col", "aten::col2im", "aten::unfold", "aten::tril",
        "aten::triu", "aten::diagonal", "aten::view_as_real", "aten::view_as_complex", "aten::_conj",
        "aten::resolve_conj", "aten::resolve_neg", "aten::set_", "aten::resize_", "aten::masked_fill",
        "aten::masked_fill_", "aten::rand", "aten::randn", "aten::randint", "aten::rand_like",
        "aten::randn_like", "aten::randperm", "aten::bernoulli", "aten::bernoulli_", "aten::uniform_",
        "aten::normal_", "aten::multinomial", "aten::_assert_async", "aten::_assert_scalar", "aten::_pin_memory", "aten::sym_size",
        "aten::sym_numel", "aten::sym_stride", "aten::sym_storage_offset", "aten::is_nonzero", "aten::item",
        "aten::equal", "aten::allclose", "aten::_has_compatible_shallow_copy_type", "aten::dequantize",
        "aten::quantize_per_tensor", "aten::quantize_per_channel", "aten::q_scale", "aten::q_zero_point",
        "aten::int_repr", "aten::_make_per_tensor_quantized_tensor", "aten::_empty_affine_quantized",
        "aten::_empty_per_channel_affine_quantized", "aten::tensor_split", "aten::movedim", "aten::split_copy",
        "aten::_pad_enum", "aten::expand_as", "aten::view_as", "aten::reshape_as", "aten::to", "aten::eye",
        "aten::hann_window", "aten::hamming_window", "aten::blackman_window", "aten::bartlett_window",
        "aten::kaiser_window",  # window functions (torch.stft's window=): tensor creation
        "aten::_linalg_check_errors", "aten::detach_", "aten::record_stream", "aten::unfold_copy",
        "prim::device", "prim::dtype", "prim::layout",  # metadata queries seen under fake tensors
        "aten::dim", "aten::sym_is_contiguous",  # metadata queries seen on nested (jagged) tensors
        "aten::unsafe_split", "aten::unsafe_split_with_sizes", "aten::unsafe_chunk", "aten::as_strided_", "aten::squeeze_", "aten::unsqueeze_", "aten::t_", "aten::transpose_",
        "aten::as_strided_scatter", "aten::slice_scatter", "aten::select_scatter", "aten::diagonal_scatter",
        "aten::_pack_padded_sequence", "aten::_pad_packed_sequence", "aten::fill_diagonal_",
        # nested tensors (nn.TransformerEncoder turns a padding mask into one): packing, unpacking, sizes
        "aten::_nested_tensor_from_mask", "aten::_nested_tensor_from_mask_left_aligned", "aten::to_padded_tensor",
        "aten::_nested_tensor_size", "aten::_nested_from_padded", "aten::_nested_tensor_from_tensor_list",
    )),
    "elementwise": ("elementwise math and activations (besides every operator tagged pointwise)", (
        "aten::softplus", "aten::hardtanh", "aten::hardtanh_", "aten::glu", "aten::prelu",
        "aten::_prelu_kernel", "aten::rrelu_with_noise", "aten::elu", "aten::elu_", "aten::celu",
        "aten::selu", "aten::leaky_relu", "aten::leaky_relu_", "aten::threshold", "aten::log_sigmoid_forward",
        "aten::_softmax_backward_data", "aten::dropout", "aten::native_dropout", "aten::feature_dropout",
        "aten::alpha_dropout", "aten::clamp_min", "aten::clamp_max", "aten::polar", "aten::complex",
        "aten::abs", "aten::_fused_rms_norm", "aten::_add_relu", "aten::add_relu", "aten::hardswish",
        "aten::hardsigmoid", "aten::mish", "aten::silu", "aten::gelu", "aten::relu6", "aten::floor_divide",
        "aten::softshrink", "aten::hardshrink", "aten::rrelu",
        "aten::masked_scatter", "aten::lerp", "aten::addcmul", "aten::addcdiv", "aten::hardswish_",
        "aten::masked_scatter_", "aten::_transform_bias_rescale_qkv",
        "aten::hardsigmoid_", "aten::relu_", "aten::silu_", "aten::gelu_", "aten::sigmoid_", "aten::tanh_",
        "aten::_thnn_fused_lstm_cell", "aten::_thnn_fused_gru_cell",  # gate math; the gate matmuls are mm ops
        "quantized::add", "quantized::add_relu", "quantized::add_scalar", "quantized::mul", "quantized::cat",
        "quantized::hardswish", "quantized::relu6", "quantized::leaky_relu", "quantized::sigmoid",
        "quantized::batch_norm2d", "quantized::batch_norm2d_relu", "quantized::layer_norm",
        "quantized::group_norm", "quantized::instance_norm", "quantized::linear_prepack",
        "quantized::conv2d_prepack", "quantized::linear_unpack", "quantized::conv2d_unpack",
    )),
    "normalisation": ("normalisation layers (a scale and shift per element)", (
        "aten::native_batch_norm", "aten::_native_batch_norm_legit", "aten::_native_batch_norm_legit_no_training",
        "aten::_native_batch_norm_legit_functional", "aten::batch_norm", "aten::native_layer_norm",
        "aten::native_group_norm", "aten::instance_norm", "aten::layer_norm", "aten::group_norm",
        "aten::rms_norm", "aten::_batch_norm_impl_index", "aten::cudnn_batch_norm",
        "aten::miopen_batch_norm", "aten::_batch_norm_with_update", "aten::_batch_norm_no_update",
        "aten::renorm", "aten::linalg_vector_norm", "aten::norm", "aten::local_response_norm",
        "aten::_weight_norm_interface",
    )),
    "softmax and reductions": ("softmax and reductions", (
        "aten::_softmax", "aten::softmax", "aten::_log_softmax", "aten::log_softmax", "aten::_safe_softmax",
        "aten::_masked_softmax",
        "aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::max", "aten::min", "aten::argmax",
        "aten::argmin", "aten::prod", "aten::var", "aten::var_mean", "aten::std", "aten::std_mean",
        "aten::cumsum", "aten::cumprod", "aten::logsumexp", "aten::any", "aten::all", "aten::_is_all_true",
        "aten::_is_any_true", "aten::topk",
        "aten::sort", "aten::argsort", "aten::kthvalue", "aten::median", "aten::count_nonzero",
        "aten::nonzero", "aten::unique_dim", "aten::_unique2", "aten::bincount", "aten::histc",
        "aten::aminmax", "aten::_aminmax",  # quantization observers' min/max statistics
    )),
    "losses": ("loss functions: elementwise differences, logarithms and comparisons, then a reduction (the fused "
               "kernels of what nn.L1Loss or nn.KLDivLoss run as elementwise operators)", (
        "aten::nll_loss_forward", "aten::nll_loss2d_forward", "aten::mse_loss", "aten::smooth_l1_loss",
        "aten::huber_loss", "aten::binary_cross_entropy", "aten::binary_cross_entropy_with_logits",
        "aten::soft_margin_loss", "aten::multi_margin_loss", "aten::multilabel_margin_loss_forward",
    )),
    "fake quantization": ("quantization-aware training's fake quantization and its fused observer: elementwise "
                          "rounding and clamping plus a min/max statistic (and their backward: a masked copy)", (
        "aten::fake_quantize_per_tensor_affine", "aten::fake_quantize_per_tensor_affine_cachemask",
        "aten::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams", "aten::fake_quantize_per_channel_affine",
        "aten::fake_quantize_per_channel_affine_cachemask", "aten::_fake_quantize_learnable_per_tensor_affine",
        "aten::_fake_quantize_learnable_per_channel_affine", "aten::fused_moving_avg_obs_fake_quant",
        "aten::_fused_moving_avg_obs_fq_helper", "aten::fake_quantize_per_tensor_affine_cachemask_backward",
        "aten::fake_quantize_per_channel_affine_cachemask_backward",
        "aten::_fake_quantize_learnable_per_tensor_affine_backward",
        "aten::_fake_quantize_learnable_per_channel_affine_backward",
    )),
    "pooling and interpolation": ("pooling, resampling and interpolation", (
        "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::max_pool1d_with_indices",
        "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices", "aten::avg_pool1d",
        "aten::avg_pool2d", "aten::avg_pool3d", "aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d",
        "aten::adaptive_avg_pool3d", "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d",
        "aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d",
        "aten::fractional_max_pool2d", "aten::lp_pool2d", "aten::max_unpool2d",
        "aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d",
        "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d", "aten::_upsample_nearest_exact3d",
        "aten::upsample_linear1d", "aten::upsample_bilinear2d", "aten::upsample_trilinear3d",
        "aten::upsample_bicubic2d", "aten::_upsample_bilinear2d_aa", "aten::_upsample_bicubic2d_aa",
        "aten::grid_sampler_2d", "aten::grid_sampler_3d", "aten::grid_sampler", "aten::affine_grid_generator",
        "aten::mkldnn_max_pool2d", "aten::quantized_max_pool2d", "quantized::max_pool2d",
        "quantized::adaptive_avg_pool2d",
    )),
    "indexing": ("indexing, gathering and scattering", (
        "aten::index", "aten::index_select", "aten::gather", "aten::scatter", "aten::scatter_add",
        "aten::scatter_reduce", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_",
        "aten::index_add", "aten::index_copy", "aten::index_fill", "aten::masked_select", "aten::take",
        "aten::embedding", "aten::one_hot", "aten::where",
        "aten::searchsorted", "aten::bucketize", "aten::nonzero_static", "aten::_unique",
        "aten::scatter_", "aten::scatter_add_", "aten::scatter_reduce_", "aten::index_add_", "aten::index_copy_",
        "aten::index_fill_", "aten::index_reduce_", "aten::put_",
        "aten::unique_consecutive",
    )),
    "detection post-processing": ("box operations of detection heads", (
        "torchvision::roi_align", "torchvision::roi_pool", "torchvision::ps_roi_align",
        "torchvision::ps_roi_pool", "torchvision::nms",
    )),
    "bookkeeping": ("profiler annotations (torch.autograd.profiler.record_function, used by DataParallel and "
                    "DistributedDataParallel's forward) do no arithmetic", (
        "profiler::_record_function_enter", "profiler::_record_function_enter_new", "profiler::_record_function_exit",
    )),
    "backward of the above": ("backward kernels of the zero-cost operators above (a training step's matrix "
                              "products and convolutions are counted; torch.utils.flop_counter counts the same)", (
        "aten::native_batch_norm_backward", "aten::batch_norm_backward", "aten::cudnn_batch_norm_backward",
        "aten::miopen_batch_norm_backward", "aten::native_group_norm_backward", "aten::native_layer_norm_backward",
        "aten::_fused_rms_norm_backward", "aten::max_pool2d_with_indices_backward",
        "aten::max_pool3d_with_indices_backward", "aten::avg_pool2d_backward", "aten::avg_pool3d_backward",
        "aten::_adaptive_avg_pool2d_backward", "aten::_adaptive_avg_pool3d_backward",
        "aten::adaptive_max_pool2d_backward", "aten::adaptive_max_pool3d_backward",
        "aten::fractional_max_pool2d_backward", "aten::fractional_max_pool3d_backward",
        "aten::upsample_nearest1d_backward", "aten::upsample_nearest2d_backward", "aten::upsample_nearest3d_backward",
        "aten::_upsample_nearest_exact1d_backward", "aten::_upsample_nearest_exact2d_backward",
        "aten::_upsample_nearest_exact3d_backward", "aten::upsample_linear1d_backward",
        "aten::upsample_bilinear2d_backward", "aten::upsample_trilinear3d_backward",
        "aten::upsample_bicubic2d_backward", "aten::_upsample_bilinear2d_aa_backward",
        "aten::_upsample_bicubic2d_aa_backward", "aten::grid_sampler_2d_backward", "aten::grid_sampler_3d_backward",
        "aten::select_backward", "aten::slice_backward", "aten::diagonal_backward", "aten::unfold_backward",
        "aten::reflection_pad1d_backward", "aten::reflection_pad2d_backward", "aten::reflection_pad3d_backward",
        "aten::replication_pad1d_backward", "aten::replication_pad2d_backward", "aten::replication_pad3d_backward",
        "aten::hardsigmoid_backward", "aten::hardswish_backward", "aten::hardtanh_backward", "aten::elu_backward",
        "aten::leaky_relu_backward", "aten::softplus_backward", "aten::mish_backward", "aten::glu_backward",
        "aten::log_sigmoid_backward", "aten::rrelu_with_noise_backward", "aten::_prelu_kernel_backward",
        "aten::_log_softmax_backward_data", "aten::masked_scatter_backward",
        "aten::_thnn_fused_lstm_cell_backward_impl", "aten::_thnn_fused_gru_cell_backward",
        "aten::embedding_dense_backward", "aten::embedding_backward", "aten::index_select_backward",
        "aten::nll_loss_backward", "aten::nll_loss2d_backward", "aten::mse_loss_backward",
        "aten::smooth_l1_loss_backward", "aten::huber_loss_backward", "aten::binary_cross_entropy_backward",
        "aten::soft_margin_loss_backward", "aten::multi_margin_loss_backward", "aten::multilabel_margin_loss_backward",
    )),
}

_QUALIFIED_ZERO: Dict[str, str] = {name: group for group, (_, names) in ZERO_BY_CONVENTION.items() for name in names}
RULES_NOTE = ("besides the names above: every operator PyTorch tags torch.Tag.pointwise (elementwise), "
              "every view (an overload whose output aliases its input), and the in-place form (name_) of every "
              "operator zero by convention")


class MacRegistry:
    """Operator -> multiply-add formula, keyed by qualified name (``"aten::addmm"``).

    Our formulas come first, then ``torch.utils.flop_counter.flop_registry`` read live. Registering an
    operator that netscope itself has a formula for or that is on the zero list, shadowing one of torch's
    formulas without ``overrides_torch=True`` or naming an operator PyTorch does not have raises
    :class:`OperatorRegistryError` (a ``ValueError``). Registering again an operator the user registered (a
    notebook cell run again) replaces their earlier entry.
    """

    def __init__(self) -> None:
        self._formulas: Registry[str, MacFormula] = Registry("multiply-add formula")
        self._zero: Dict[str, str] = dict(_QUALIFIED_ZERO)  # name -> group or reason
        self._sealed = False  # netscope's own formulas are all in (seal_builtins): later entries are the user's
        self._user: Set[str] = set()  # operators whose formula or ignore entry the user registered

    def register(self, op: OpLike, *, overrides_torch: bool = False) -> Callable[[MacFormula], MacFormula]:
        """Decorator: ``@register_macs("mylib::fused_conv")`` or ``@register_macs(torch.ops.aten.foo)``."""
        name = qualified_name(op)
        _refuse_unknown(name, "register_macs")

        def decorator(fn: MacFormula) -> MacFormula:
            mine = name in self._user  # the user's own entry (a notebook cell run again): this one replaces it
            if name in self._zero and not mine:
                raise OperatorRegistryError(f"{name} is on the zero-by-convention list ({self._zero[name]}); "
                                            "a formula for it would contradict that list")
            if not overrides_torch and _torch_formula(name) is not None:
                raise OperatorRegistryError(f"torch.utils.flop_counter already has a formula for {name}; pass "
                                            "overrides_torch=True to replace it deliberately")
            if name in self._formulas and not mine:  # netscope's own formula: replacing it is a deliberate step
                raise OperatorRegistryError(
                    f"multiply-add formula for {name!r} registered twice: netscope has one for it. To replace it, "
                    f"first call netscope.operators.registry.REGISTRY.unregister({name!r})")
            if mine:
                self.unregister(name)
            self._formulas.add(name, _checked(name, fn))
            if self._sealed:
                self._user.add(name)
            return fn

        return decorator

    def ignore(self, op: OpLike, reason: str) -> None:
        """Declare ``op`` zero by convention (with the reason shown in the documentation)."""
        name = qualified_name(op)
        if not reason:
            raise OperatorRegistryError("ignore_macs needs a reason: why does this operator cost no multiply-adds?")
        _refuse_unknown(name, "ignore_macs")
        if _torch_formula(name) is not None:  # torch's formula is looked up first: the entry would do nothing
            raise OperatorRegistryError(
                f"torch.utils.flop_counter has a multiply-add formula for {name}, which counts it; ignoring it is not "
                "possible (register_macs(..., overrides_torch=True) replaces it)")
        if name in self._user:  # the user's own entry (a notebook cell run again): this one replaces it
            self.unregister(name)
        elif name in self._formulas or name in self._zero:
            raise OperatorRegistryError(f"{name} already has a multiply-add formula or is already ignored")
        self._zero[name] = reason
        if self._sealed:
            self._user.add(name)

    def unregister(self, op: OpLike) -> None:
        """Remove a formula or ignore entry added with :meth:`register` / :meth:`ignore` (tests, plugins)."""
        name = qualified_name(op)
        self._formulas.pop(name, None)
        self._user.discard(name)
        if self._zero.get(name) not in ZERO_BY_CONVENTION:
            self._zero.pop(name, None)

    def seal_builtins(self) -> None:
        """netscope's own formulas are registered: every later entry is the user's (replaced when registered again)."""
        self._sealed = True

    def resolve(self, func) -> Tuple[str, Optional[MacFormula]]:
        """``(kind, formula)`` for an operator overload seen at dispatch: kind is ``"formula"``,
        ``"zero"`` or ``"uncounted"``. The slow path, taken once per operator per pass."""
        packet = getattr(func, "_overloadpacket", func)
        name = qualified_name(packet)
        formula = self._formulas.get(name)
        if formula is not None:
            return "formula", formula
        torch_fn = flop_counter.flop_registry.get(packet)
        if torch_fn is not None:
            return "formula", _real_macs(_from_flops(torch_fn))
        if (name in self._zero or torch.Tag.pointwise in getattr(func, "tags", ()) or getattr(func, "is_view", False)
                or (name.endswith("_") and name[:-1] in self._zero)):  # abs_ is abs written into its input
            return "zero", None
        return "uncounted", None

    def formula_names(self) -> Tuple[str, ...]:
        """Operators with a netscope formula (torch's own are read from its registry at each lookup)."""
        return tuple(self._formulas)

    def zero_names(self) -> Dict[str, str]:
        """Operators zero by convention, with their group or reason."""
        return dict(self._zero)


def qualified_name(op: OpLike) -> str:
    """``"aten::addmm"`` for a name, an op packet or an overload."""
    if isinstance(op, str):
        if "::" not in op:
            raise OperatorRegistryError(f"operator name {op!r} needs its namespace, e.g. 'aten::{op}' or 'mylib::{op}'")
        return op
    packet = getattr(op, "_overloadpacket", op)
    name = getattr(packet, "_qualified_op_name", None)
    return name if name is not None else str(packet)


_BUILTIN_NAMESPACES = ("aten", "prims")  # fixed by the torch build; a library's ops may be defined later


def _refuse_unknown(name: str, what: str) -> None:
    """A misspelled built-in operator would make the entry silently do nothing: refuse it, with the nearest names."""
    namespace, _, op_name = name.partition("::")
    if namespace not in _BUILTIN_NAMESPACES or hasattr(getattr(torch.ops, namespace), op_name):
        return
    import difflib

    close = difflib.get_close_matches(name, known_operators(namespace), n=3)
    raise OperatorRegistryError(
        f"{what}: PyTorch {torch.__version__} has no operator {name}"
        + (f" (did you mean {', '.join(close)}?)" if close else "")
        + f"; an entry for it would never apply. List the {namespace} operators with `python -c \"from "
        f"netscope.operators.registry import known_operators; print(known_operators('{namespace}'))\"`, or see "
        "which ones a model runs with `netscope summary MODEL --by-op`")


def known_operators(namespace: str = "aten") -> Tuple[str, ...]:
    """The qualified names (``"aten::addmm"``) of the operators PyTorch's dispatcher knows in ``namespace``,
    sorted; empty where this torch cannot list them."""
    try:  # dir(torch.ops.aten) lists only the operators looked up so far; the dispatcher lists them all
        names = torch._C._dispatch_get_all_op_names()
    except Exception:  # pragma: no cover - a torch without it
        return ()
    return tuple(sorted({n.split(".")[0] for n in names if n.startswith(namespace + "::")}))


def _torch_formula(name: str):
    namespace, _, op_name = name.partition("::")
    try:
        packet = getattr(getattr(torch.ops, namespace), op_name)
    except (AttributeError, RuntimeError):
        return None
    return flop_counter.flop_registry.get(packet)


def _shape_of(value):
    """Tensors -> ``torch.Size``, inside plain lists and tuples too; anything else as it is.

    A cheap stand-in for the ``tree_map`` that ``flop_counter.shape_wrapper`` runs on every call: that
    generic pytree walk cost more than the formula itself and was the trace's biggest Python hot spot.
    """
    if isinstance(value, torch.Tensor):
        return value.shape
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_shape_of(v) for v in value)
    return value


def _checked(name: str, fn: MacFormula) -> MacFormula:
    """``fn`` made to fail loudly: an exception or a result that is not a whole number >= 0 (a float, a tensor,
    a negative count) becomes a :class:`MacFormulaError` naming the operator and the formula."""
    where = f"the multiply-add formula registered for {name} ({getattr(fn, '__module__', '?')}." \
            f"{getattr(fn, '__qualname__', repr(fn))})"

    def formula(*args, **kwargs) -> int:
        try:
            macs = fn(*args, **kwargs)
        except Exception as exc:
            raise MacFormulaError(f"{where} raised {type(exc).__name__}: {exc}. Fix the formula: it is called "
                                  "like the operator, with tensors, plus out_val=<the output>",
                                  original=exc) from exc
        try:
            count = operator.index(macs)
        except TypeError:
            count = -1
        if count < 0 or isinstance(macs, bool):
            raise MacFormulaError(f"{where} returned {macs!r}; it must return a whole number of multiply-adds "
                                  ">= 0 (a Python int)")
        return _in_real_macs(count, args, kwargs.get("out_val"))

    formula.__wrapped__ = fn
    return formula


def _from_flops(flop_fn) -> MacFormula:
    """A torch ``flop_registry`` formula (2 FLOPs per multiply-add) as a multiply-add formula."""
    shape_fn = getattr(flop_fn, "__wrapped__", None)  # the formula behind flop_counter's shape_wrapper
    if shape_fn is None:  # a raw-tensor formula (registered with get_raw=True): call it as it is
        def raw_macs(*args, out_val=None, **kwargs) -> int:
            return int(flop_fn(*args, out_val=out_val, **kwargs)) // 2

        return raw_macs

    def macs(*args, out_val=None, **kwargs) -> int:
        shapes = [_shape_of(a) for a in args]
        if kwargs:
            kwargs = {k: _shape_of(v) for k, v in kwargs.items()}
        return int(shape_fn(*shapes, out_shape=_shape_of(out_val), **kwargs)) // 2

    return macs


def _real_macs(fn: MacFormula) -> MacFormula:
    """A formula counting one per complex multiply-add (as torch's do) made to count real ones."""
    def macs(*args, out_val=None, **kwargs) -> int:
        return _in_real_macs(fn(*args, out_val=out_val, **kwargs), args, out_val)

    return macs


REAL_PER_COMPLEX = 4  # (a+bi)(c+di) accumulated: ac, bd, ad, bc, each multiplied and added once


def _in_real_macs(count: int, args, out_val) -> int:
    """A formula's count (complex multiply-adds on complex operands) in real multiply-adds."""
    return count * REAL_PER_COMPLEX if count and _complex(args, out_val) else count


def _complex(args, out_val) -> bool:
    """Whether an operator works on complex numbers: its first argument or its (first) output is complex. Formulas
    count one multiply-add per complex one (torch's do too); the registry turns them into real ones."""
    first = args[0] if args else None
    if isinstance(first, torch.Tensor) and first.is_complex():
        return True
    out = out_val[0] if isinstance(out_val, (tuple, list)) and out_val else out_val
    return isinstance(out, torch.Tensor) and out.is_complex()


REGISTRY = MacRegistry()


def register_macs(op: OpLike, *, overrides_torch: bool = False) -> Callable[[MacFormula], MacFormula]:
    """Register a multiply-add formula ``fn(*args, out_val=output, **kwargs) -> int`` for ``op``.

    ``op``: ``"namespace::name"``, ``torch.ops.ns.name`` or one of its overloads. Formulas apply to
    every later ``netscope.summary`` pass. Registering the same operator again (a notebook cell run again)
    replaces your earlier formula; replacing one of netscope's own formulas needs ``REGISTRY.unregister(op)``
    first, and one of torch's ``overrides_torch=True`` (see :class:`MacRegistry`). On complex operands count
    complex multiply-adds: netscope turns each into 4 real ones, as for its own formulas."""
    return REGISTRY.register(op, overrides_torch=overrides_torch)


def ignore_macs(op: OpLike, reason: str) -> None:
    """Declare ``op`` zero multiply-adds by convention, so it no longer makes reports partial."""
    REGISTRY.ignore(op, reason)


UNSEEN = object()  # what an OpResolver lookup returns for an operator not met yet in this pass


class OpResolver(dict):
    """One pass's operator table: ``op packet -> formula`` (``None`` for the zero and uncounted ones),
    filled on first sight, with ``kinds``: ``op packet -> "formula" | "zero" | "uncounted"``.

    The dispatch mode does one ``dict`` lookup per operator; a miss (``UNSEEN``) resolves the operator
    against the registry (and torch's live one) once per pass."""

    def __init__(self, registry: MacRegistry = REGISTRY):
        super().__init__()
        self.registry = registry
        self.kinds: Dict[object, str] = {}
        self.complex_packets: Set[object] = set()  # operators counted on complex numbers (x REAL_PER_COMPLEX)

    def first_sight(self, func) -> Optional[MacFormula]:
        kind, formula = self.registry.resolve(func)
        packet = func._overloadpacket
        if formula is not None:
            formula = self._noting_complex(packet, formula)
        self[packet] = formula
        self.kinds[packet] = kind
        return formula

    def _noting_complex(self, packet, formula: MacFormula) -> MacFormula:
        """``formula``, also adding ``packet`` to :attr:`complex_packets` when a call counts complex numbers."""
        noted = self.complex_packets

        def counted(*args, out_val=None, **kwargs) -> int:
            macs = formula(*args, out_val=out_val, **kwargs)
            if macs and packet not in noted and _complex(args, out_val):
                noted.add(packet)
            return macs

        return counted


def complex_note(packets) -> Optional[str]:
    """The report's note when operators were counted on complex numbers (``packets``: an ``OperatorTable``'s
    ``complex_packets``), naming them and the convention; ``None`` when there were none."""
    names = sorted({qualified_name(packet) for packet in packets})
    if not names:
        return None
    return (f"multiply-adds of complex operators ({', '.join(names)}) are counted in real ones: each complex "
            f"multiply-add counts as {REAL_PER_COMPLEX} real ones ((a+bi)(c+di): ac, bd, ad, bc); "
            "torch.utils.flop_counter counts it as one")


# The formulas netscope adds live in netscope/operators/formulas.py; importing it registers them.
importlib.import_module("netscope.operators.formulas")

REGISTRY.seal_builtins()
