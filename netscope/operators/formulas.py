"""The multiply-add formulas netscope adds to ``torch.utils.flop_counter``'s, one function per operator.

Conventions (each formula counts multiply-adds, never FLOPs):

- matrix products and convolutions: one per weight element applied per output position, the count
  torch's ``flop_registry`` makes (halved) and torchvision publishes as GFLOPS / GIPS; a sparse operand
  of ``mm``/``addmm``/``torch.sparse.mm`` counts its stored elements only; ``mv``, ``dot``, ``addbmm``
  count like the ``mm``/``bmm`` they equal, ``_grouped_mm`` (mixture-of-experts) like its groups' matmuls,
  ``linear`` and ``matmul`` (reaching dispatch whole on nested tensors) per real row / per component;
- RNN kernels (``mkldnn_rnn_layer``, ``_cudnn_rnn``): every weight matrix is applied once per time
  step and batch row (input, hidden and LSTM projection matrices); gate math is elementwise (0), so
  LSTM/GRU/RNN count the same as the ``mm``/``addmm`` calls the meta device decomposes them into;
- ``_embedding_bag`` (``nn.EmbeddingBag``): with ``per_sample_weights`` one per element of each bagged row (the
  sparse product the weighted sum equals), without them 0 (a gather and a reduction, as ``embedding`` + ``sum``);
- ``cdist`` (``_cdist_forward``, ``_euclidean_dist``): p = 2 one per coordinate of each pair of rows (plus the two
  norm columns of the matmul path); other p no products (0);
- ``_trilinear`` (``nn.Bilinear``): one per point of the broadcast product space (N·out·in1·in2);
- ``torchvision::deform_conv2d``: as the plain convolution of that weight; sampling the offsets
  (bilinear interpolation) and the mask product are elementwise (0);
- FFTs (``_fft_r2c``, ``_fft_c2c``, ``_fft_c2r``): per transformed dimension of length n, a radix-2
  transform counts n·⌈log₂ n⌉/2 complex multiply-adds (one per butterfly) per 1-d signal, over the
  complex signal's full (two-sided) length; like every formula here it counts complex multiply-adds, which
  the registry turns into 4 real ones each;
- ``quantized::`` conv/linear (fused ``_relu`` variants, dynamic and transposed ones included): the
  integer multiply-adds of the float twin, from the packed weight's shape;
- ``addr`` (outer product ``beta·input + alpha·v1 ⊗ v2``): one per output element, as ``addmm`` with k = 1;
- dense solvers (``linalg_inv_ex``, ``_linalg_solve_ex``, ``linalg_cholesky_ex``, ``linalg_lu_factor_ex``,
  ``linalg_lu``, ``_linalg_det``, ``_linalg_slogdet``, ``linalg_lu_solve``, ``cholesky_solve``,
  ``linalg_solve_triangular``, ``cholesky_inverse``): the textbook elimination counts per n×n matrix (the update
  ``x -= l·u`` of each step; divisions, reciprocals and square roots, O(n²), are elementwise and pivoting is
  comparisons and swaps: none is a multiply-add), see :func:`lu_macs`.

Left uncounted on purpose (the report names them as partial): see :data:`NO_CONVENTION`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.utils import flop_counter

from netscope.operators.registry import _from_flops, register_macs
from netscope.run.shapes import nested_shapes

aten = torch.ops.aten


# ---- fast paths for the commonest operators ---------------------------------------------------------
# Same counts as flop_counter's formulas, without its nested shape-wrapping calls: every Linear layer
# and batched matmul hits these, so they dominate the trace's Python cost.

_STRIDED = torch.strided


@register_macs("aten::addmm", overrides_torch=True)
def addmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """(m, k) @ (k, n); the bias add is not a multiply-add."""
    if a.layout is not _STRIDED or b.layout is not _STRIDED:
        return _sparse_product_macs(a, b)
    m, k = a.shape
    return m * k * b.shape[1]


@register_macs("aten::mm", overrides_torch=True)
def mm_macs(a, b, *args, out_val=None, **kwargs) -> int:
    """(m, k) @ (k, n), as ``addmm``. flop_counter's formula reads shapes only, so it counts a sparse
    operand (``adj @ x`` with a COO or CSR ``adj``) as dense: m·k·n instead of the products the kernel makes."""
    return addmm_macs(None, a, b)


def _sparse_product_macs(a, b) -> int:
    """(m, k) @ (k, n) with a sparse operand (COO, CSR, ...): one multiply-add per stored element of the
    sparse one and column (or row) of the dense one; two sparse ones: for each k, a's stored elements in
    column k times b's in row k."""
    if b.layout is _STRIDED:
        return a._nnz() * b.shape[1]
    if a.layout is _STRIDED:
        return a.shape[0] * b._nnz()
    k = a.shape[1]
    in_column = torch.bincount(a.to_sparse_coo().coalesce().indices()[1], minlength=k)
    in_row = torch.bincount(b.to_sparse_coo().coalesce().indices()[0], minlength=k)
    return int((in_column * in_row).sum())


@register_macs("aten::baddbmm", overrides_torch=True)
def baddbmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """Batched (m, k) @ (k, n)."""
    batch, m, k = a.shape
    return batch * m * k * b.shape[2]


@register_macs("aten::convolution_backward", overrides_torch=True)
def conv_backward_macs(grad_out, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                       groups, output_mask, *args, out_val=None, **kwargs) -> int:
    """The input gradient and the weight gradient (as ``output_mask`` asks) each cost the forward's
    multiply-adds, grouped convolutions included. flop_counter's formula ignores ``groups`` and counts a
    ``g``-group backward as ``g + 1`` forwards (65x for a 64-channel depthwise conv)."""
    forward = flop_counter.conv_flop_count(list(x.shape), list(weight.shape), list(grad_out.shape),
                                           transposed=transposed) // 2
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


# ---- matrix-vector and batched-sum products (flop_counter has no entry) ----------------------------

@register_macs("aten::mv")
def mv_macs(matrix, vector, *args, out_val=None, **kwargs) -> int:
    """(m, n) @ (n,): one per matrix element."""
    return matrix.shape[0] * matrix.shape[1]


@register_macs("aten::addmv")
def addmv_macs(bias, matrix, vector, *args, out_val=None, **kwargs) -> int:
    return mv_macs(matrix, vector)


@register_macs("aten::dot")
def dot_macs(a, b, *args, out_val=None, **kwargs) -> int:
    """(n,) . (n,): n."""
    return a.shape[0]


register_macs("aten::vdot")(dot_macs)


@register_macs("aten::addbmm")
def addbmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """Sum over the batch of (m, k) @ (k, n): the matmuls of ``bmm`` (the sum of their results is additions)."""
    batch, m, k = a.shape
    return batch * m * k * b.shape[2]


@register_macs("aten::_sparse_sparse_matmul")
def sparse_sparse_matmul_macs(a, b, *args, out_val=None, **kwargs) -> int:
    return _sparse_product_macs(a, b)


@register_macs("aten::_sparse_addmm")
def sparse_addmm_macs(bias, sparse, dense, *args, out_val=None, **kwargs) -> int:
    """``torch.sparse.mm`` / ``torch.sparse.addmm`` (sparse COO ``(m, k)`` @ dense ``(k, n)``): each stored
    element of the sparse matrix times a row of ``n`` (the zeros it does not store cost nothing)."""
    return _sparse_product_macs(sparse, dense)


@register_macs("aten::linear")
def linear_macs(input, weight, *args, out_val=None, **kwargs) -> int:
    """``F.linear`` reaching dispatch whole, as it does on a nested tensor (a dense input decomposes into
    ``addmm``/``mm`` first): the (N, K) weight once per row of K input elements."""
    return input.numel() * weight.shape[0]


@register_macs("aten::matmul")
def matmul_macs(a, b, *args, out_val=None, **kwargs) -> int:
    """``torch.matmul`` reaching dispatch whole, as on nested tensors (SDPA's math path on a jagged batch; a dense
    matmul decomposes into ``mm``/``bmm`` first): per component, its broadcast batch x m·k·n."""
    pieces_a = nested_shapes(a)["nested"] if a.is_nested else None
    pieces_b = nested_shapes(b)["nested"] if b.is_nested else None
    count = len(pieces_a if pieces_a is not None else pieces_b)
    total = 0
    for i in range(count):  # a dense operand's leading dim (when it has a batch) pairs with the components
        shape_a = pieces_a[i] if pieces_a is not None else a.shape[1:] if a.dim() > 2 else a.shape
        shape_b = pieces_b[i] if pieces_b is not None else b.shape[1:] if b.dim() > 2 else b.shape
        total += _matmul_macs(tuple(shape_a), tuple(shape_b))
    return total


def _matmul_macs(shape_a, shape_b) -> int:
    """``torch.matmul`` of dense operands of these shapes (1-d ones promoted as matmul promotes them)."""
    shape_a = (1,) + shape_a if len(shape_a) == 1 else shape_a
    shape_b = shape_b + (1,) if len(shape_b) == 1 else shape_b
    batch = torch.broadcast_shapes(shape_a[:-2], shape_b[:-2])
    return math.prod(batch) * shape_a[-2] * shape_a[-1] * shape_b[-1]


@register_macs("aten::_grouped_mm")
def grouped_mm_macs(a, b, offs=None, *args, out_val=None, **kwargs) -> int:
    """``torch._grouped_mm`` (mixture-of-experts layers: each expert's weight on its own tokens), one matmul per
    group: (M, K) rows grouped by ``offs`` against (G, K, N); (G, M, K) @ (G, K, N); (M, K) @ (K, N) with the
    contraction split by ``offs``; (G, M, K) against the column groups of (K, N). Rows (or columns) past
    ``offs[-1]`` are not computed: they count only where ``offs`` has no values to read (meta, fake tensors)."""
    k = a.shape[-1]
    if a.dim() == 3 and b.dim() == 3:
        return a.shape[0] * a.shape[1] * k * b.shape[2]
    if a.dim() == 2 and b.dim() == 2:
        return a.shape[0] * _grouped_extent(offs, k) * b.shape[1]
    if a.dim() == 2:
        return _grouped_extent(offs, a.shape[0]) * k * b.shape[-1]
    return a.shape[1] * k * _grouped_extent(offs, b.shape[-1])


def _grouped_extent(offs, size: int) -> int:
    """How much of a grouped dimension of ``size`` the groups cover: ``offs[-1]`` (cumulative ends), when readable."""
    if not _has_values(offs):
        return size
    return min(int(offs[-1]), size)


def _has_values(tensor) -> bool:
    """Whether a non-empty index tensor's values can be read (not on meta, not a fake tensor)."""
    from torch._subclasses.fake_tensor import FakeTensor

    return tensor is not None and bool(tensor.numel()) and tensor.device.type != "meta" and \
        not isinstance(tensor, FakeTensor)


# Formulas that read index values, and count at capacity where a pass has none (meta device, fake tensors).
AT_CAPACITY = {
    "aten::_grouped_mm": "rows past the groups' last offset are not",
    "aten::_embedding_bag": "padding_idx rows and indices past include_last_offset's end are not",
    "aten::_embedding_bag_forward_only": "padding_idx rows and indices past include_last_offset's end are not",
    "aten::_embedding_bag_backward": "padding_idx rows are not",
    "aten::_embedding_bag_dense_backward": "padding_idx rows are not",
    "aten::_embedding_bag_per_sample_weights_backward": "padding_idx rows are not",
}


def capacity_note(operators) -> Optional[str]:
    """The note for a pass without tensor values (meta device, fake tensors) whose multiply-adds include an operator
    counted at capacity (:data:`AT_CAPACITY`): its count is an upper bound, said with what it includes. ``operators``:
    an ``OperatorTable``."""
    from netscope.operators.registry import qualified_name

    counted = {qualified_name(packet) for packet, macs in zip(operators.mac_packets, operators.mac_values) if macs}
    named = [f"{name}: {AT_CAPACITY[name]}" for name in sorted(counted & AT_CAPACITY.keys())]
    if not named:
        return None
    return ("without tensor values (meta device, fake tensors) these operators count every index or row as used, an "
            "upper bound where some are not (" + "; ".join(named) + ")")


# ---- outer product and dense solvers (neither torch.utils.flop_counter nor fvcore counts them) ---------

@register_macs("aten::addr")
def addr_macs(input, vec1, vec2, *args, out_val=None, **kwargs) -> int:
    """``beta·input + alpha·(vec1 ⊗ vec2)``, the outer product of an m- and an n-vector: one product per output
    element (m·n), the count of ``addmm`` with a (m, 1) @ (1, n) product; scaling by alpha and beta is elementwise."""
    return vec1.shape[0] * vec2.shape[0]


def lu_macs(n: int, columns: Optional[int] = None) -> int:
    """LU factorization of an n×n matrix (Gaussian elimination): step k updates the trailing (n-k-1)² block,
    Σ m² for m < n = (n-1)·n·(2n-1)/6, the textbook n³/3 (2n³/3 flops). An n×``columns`` matrix: step k of
    min(n, columns) updates (n-k-1)·(columns-k-1) elements."""
    if columns is None or columns == n:
        return (n - 1) * n * (2 * n - 1) // 6 if n else 0
    return sum((n - k - 1) * (columns - k - 1) for k in range(min(n, columns)))


def triangular_solves_macs(n: int) -> int:
    """Forward then back substitution with the LU factors for one right-hand side: n(n-1)/2 updates each."""
    return n * (n - 1)


def _matrices(a) -> int:
    """How many n×n matrices a (..., n, n) batch holds."""
    n = a.shape[-1]
    return a.numel() // (n * n) if n else 0


@register_macs("aten::linalg_inv_ex")
def linalg_inv_macs(a, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.inv``: Gauss-Jordan inversion in place, n(n-1)² per n×n matrix (each of n steps updates the
    other (n-1)² elements), leading term the textbook n³ (2n³ flops: LAPACK's getrf + getri, LU then inverting U and
    solving X·L = U⁻¹). torch's kernel (LU, then a solve against the identity) makes about 4n³/3; the count is the
    operator's, not one kernel's."""
    n = a.shape[-1]
    return _matrices(a) * n * (n - 1) ** 2


@register_macs("aten::_linalg_solve_ex")
def linalg_solve_macs(a, b, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.solve`` (left or right, a vector or k right-hand sides, broadcast batches): one LU of each
    n×n matrix of ``a`` (:func:`lu_macs`, factored once even when ``b`` broadcasts it) plus forward and back
    substitution for each right-hand side of the result (:func:`triangular_solves_macs`)."""
    return _lu_per_matrix(a) + _right_hand_sides(a, out_val) * triangular_solves_macs(a.shape[-1])


def cholesky_macs(n: int) -> int:
    """Cholesky factorization of an n×n matrix: step k updates the lower triangle of the trailing (n-k-1)² block,
    Σ m(m+1)/2 for m < n = (n-1)·n·(n+1)/6, the textbook n³/6 (n³/3 flops), half of LU's."""
    return (n - 1) * n * (n + 1) // 6


@register_macs("aten::linalg_cholesky_ex")
def linalg_cholesky_macs(a, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.cholesky`` (``upper`` or not): :func:`cholesky_macs` per n×n matrix."""
    return _matrices(a) * cholesky_macs(a.shape[-1])


@register_macs("aten::linalg_lu_factor_ex")
def linalg_lu_factor_macs(a, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.lu_factor`` (square or rectangular): :func:`lu_macs` per matrix."""
    return _lu_per_matrix(a)


register_macs("aten::linalg_lu")(linalg_lu_factor_macs)  # the same elimination, its factors unpacked as P, L, U


def _lu_per_matrix(a) -> int:
    m, n = a.shape[-2], a.shape[-1]
    return (a.numel() // (m * n) if m * n else 0) * lu_macs(m, n)


@register_macs("aten::_linalg_det")
def linalg_det_macs(a, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.det``: an LU (:func:`lu_macs`) per matrix; the product of U's diagonal is a reduction (0, as
    ``prod``)."""
    return _lu_per_matrix(a)


register_macs("aten::_linalg_slogdet")(linalg_det_macs)  # slogdet, logdet: the LU, then a sum of logarithms


def _right_hand_sides(a, out_val) -> int:
    """Right-hand sides of a solve against (..., n, n) ``a``, from the result's size (vector, left or right side,
    broadcast batches)."""
    n = a.shape[-1]
    result = out_val[0] if isinstance(out_val, (tuple, list)) else out_val
    return result.numel() // n if n else 0


@register_macs("aten::linalg_lu_solve")
def linalg_lu_solve_macs(lu, pivots, b, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.lu_solve`` with given LU factors: :func:`triangular_solves_macs` per right-hand side."""
    return _right_hand_sides(lu, out_val) * triangular_solves_macs(lu.shape[-1])


@register_macs("aten::cholesky_solve")
def cholesky_solve_macs(b, factor, *args, out_val=None, **kwargs) -> int:
    """``torch.cholesky_solve`` with a given Cholesky factor: forward and back substitution, n(n-1) per right-hand
    side (as with LU factors; the divisions by the diagonal are not multiply-adds)."""
    return _right_hand_sides(factor, out_val) * triangular_solves_macs(factor.shape[-1])


@register_macs("aten::linalg_solve_triangular")
def solve_triangular_macs(a, b, *args, out_val=None, **kwargs) -> int:
    """``torch.linalg.solve_triangular``: one substitution, n(n-1)/2 per right-hand side."""
    n = a.shape[-1]
    return _right_hand_sides(a, out_val) * (n * (n - 1) // 2)


@register_macs("aten::cholesky_inverse")
def cholesky_inverse_macs(factor, *args, out_val=None, **kwargs) -> int:
    """``torch.cholesky_inverse`` (A⁻¹ from A's Cholesky factor L, ``upper`` or not), as LAPACK's potri: L's
    inverse X by substitution against each column of the identity (column j: (n-j)(n-j-1)/2 updates, Σ =
    (n-1)n(n+1)/6), then A⁻¹ = XᵀX, symmetric, its lower triangle only (element (i, j), i >= j: n-i products,
    Σ = n(n+1)(n+2)/6); together n(n+1)(2n+1)/6 per matrix, the textbook n³/3 (trtri + lauum, n³/3 flops
    each)."""
    n = factor.shape[-1]
    return _matrices(factor) * (n * (n + 1) * (2 * n + 1) // 6)


# Operators left uncounted on purpose, and why (the report says it beside the operator): no multiply-add count is
# defensible, so the report names them as partial rather than showing a number of our choosing. CTC: its
# forward-backward recursion runs in log space, where each lattice node's product is an addition of
# log-probabilities and its sum a log-sum-exp, so counted as it runs it is 0 (logsumexp's convention); counted as
# the probability-space recursion it stands for it is 1 to 3 per node of a T x (2S+1) lattice whose extent depends on
# the input and target lengths' values, which a meta-device pass does not have.
NO_CONVENTION = {
    # eigen and singular value decompositions: a finite reduction (Hessenberg, bidiagonal), then an iterative
    # QR phase whose steps depend on the values' convergence; the published counts are estimates that differ
    # with the algorithm and the vectors asked for (Trefethen & Bau's SVD: 2mn² + 11n³ or 4mn² - 4n³/3 flops)
    "aten::linalg_eig": "no standard count (an iterative QR phase whose length depends on the values' "
                        "convergence; published counts are estimates that differ by algorithm and by the vectors "
                        "asked for)",
    "aten::_linalg_svd": "no standard count (an iterative phase after the bidiagonal reduction, whose length depends "
                         "on the values' convergence; published counts are estimates that differ by algorithm and "
                         "by the vectors asked for)",
    "aten::_ctc_loss": "no standard count (a log-space recursion: 0 as it runs, 1-3 products per lattice node as "
                       "the probability recursion it stands for, over a lattice sized by the lengths' values)",
}


# ---- embedding bags -------------------------------------------------------------------------------

@register_macs("aten::_embedding_bag")
def embedding_bag_macs(weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                       per_sample_weights=None, include_last_offset=False, padding_idx=-1, *args, out_val=None,
                       **kwargs) -> int:
    """``nn.EmbeddingBag``: without ``per_sample_weights`` (modes sum, mean, max) a gather and a reduction, zero
    like ``aten::embedding`` followed by ``aten::sum``/``mean``/``amax``; with them (mode sum only) a weighted sum,
    each bagged row scaled and accumulated: one multiply-add per element of every row that enters a bag (the
    sparse ``(bags, num_embeddings) @ weight`` product it equals, counted by stored elements as ``mm`` is). Rows
    whose index is ``padding_idx``, and indices past ``offsets[-1]`` under ``include_last_offset``, enter no bag;
    where the index values cannot be read (meta device, fake tensors) every index is counted."""
    if per_sample_weights is None:
        return 0
    return _bagged_rows(indices, offsets, include_last_offset, padding_idx) * weight.shape[-1]


register_macs("aten::_embedding_bag_forward_only")(embedding_bag_macs)


@register_macs("aten::_embedding_bag_per_sample_weights_backward")
def embedding_bag_weights_backward_macs(grad, weight, indices, offsets, offset2bag, mode, padding_idx=-1, *args,
                                        out_val=None, **kwargs) -> int:
    """The gradient of each per-sample weight: its row dotted with its bag's gradient, as many multiply-adds as
    the forward's weighted sum."""
    return _bagged_rows(indices, offsets, False, padding_idx) * weight.shape[-1]


@register_macs("aten::_embedding_bag_backward")
def embedding_bag_backward_macs(grad, indices, offsets, offset2bag, bag_size, maximum_indices, num_weights,
                                scale_grad_by_freq, mode, sparse, per_sample_weights=None, padding_idx=-1, *args,
                                out_val=None, **kwargs) -> int:
    """The weight gradient: each bag's gradient scattered back to its rows, scaled by the row's per-sample weight
    when there is one (as many multiply-adds as the forward's weighted sum; indices past an
    ``include_last_offset`` end, which the backward does not see apart, are counted), else a scatter (0)."""
    if per_sample_weights is None:
        return 0
    return _bagged_rows(indices, offsets, False, padding_idx) * grad.shape[-1]


@register_macs("aten::_embedding_bag_dense_backward")
def embedding_bag_dense_backward_macs(grad, indices, offset2bag, bag_size, maximum_indices, num_weights,
                                      scale_grad_by_freq, mode, per_sample_weights=None, padding_idx=-1, *args,
                                      out_val=None, **kwargs) -> int:
    return embedding_bag_backward_macs(grad, indices, None, offset2bag, bag_size, maximum_indices, num_weights,
                                       scale_grad_by_freq, mode, False, per_sample_weights, padding_idx)


def _bagged_rows(indices, offsets, include_last_offset, padding_idx) -> int:
    """How many indices enter a bag (all of them where their values cannot be read)."""
    if not _has_values(indices):
        return indices.numel()
    flat = indices.reshape(-1)
    if include_last_offset and _has_values(offsets):
        flat = flat[:int(offsets[-1])]
    if padding_idx is not None and padding_idx >= 0:
        return int((flat != padding_idx).sum())
    return flat.numel()


# ---- attention ------------------------------------------------------------------------------------

_flash = flop_counter.flop_registry.get(aten._scaled_dot_product_flash_attention)
if _flash is not None and hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
    register_macs("aten::_scaled_dot_product_flash_attention_for_cpu")(_from_flops(_flash))


if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    @register_macs("aten::_scaled_dot_product_flash_attention_for_cpu_backward")
    def cpu_flash_backward_macs(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
        """The count flop_counter gives the other flash-attention backwards (scores recomputed, then four
        batched matmuls); it has no entry for the CPU kernel."""
        return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape) // 2


def _sequence_lengths(x) -> list:
    """Each sequence's length (the dim before the features) of a batch-first ``(batch, seq, features)`` or
    unbatched ``(seq, features)`` tensor, or of a nested tensor's components (a padding mask the fast path
    turned into one: the padded positions are never computed)."""
    if x.is_nested:
        return [shape[-2] for shape in nested_shapes(x)["nested"]]
    return [x.shape[-2]] * (x.shape[0] if x.dim() == 3 else 1)


@register_macs("aten::_native_multi_head_attention")
def native_mha_macs(query, key, value, embed_dim, num_head, *args, out_val=None, **kwargs) -> int:
    """q/k/v projections, scores, weighted sum, output projection (``nn.MultiheadAttention`` fast path)."""
    target, source = _sequence_lengths(query), _sequence_lengths(key)
    projections = sum(target) * embed_dim * embed_dim  # q
    projections += 2 * sum(source) * embed_dim * embed_dim  # k, v
    attention = 2 * sum(t * s for t, s in zip(target, source)) * embed_dim  # q @ k^T and attn @ v over all heads
    output = sum(target) * embed_dim * embed_dim
    return projections + attention + output


@register_macs("aten::_transformer_encoder_layer_fwd")
def transformer_encoder_layer_macs(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                                   use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2,
                                   norm_bias_2, ffn_weight_1, *args, out_val=None, **kwargs) -> int:
    """``nn.TransformerEncoderLayer``'s fused eval path: q/k/v and output projections, scores and weighted
    sum over all heads, and the two feed-forward matmuls (what the unfused layer's operators count), over
    the real tokens only when ``src`` is nested."""
    lengths = _sequence_lengths(src)
    tokens = sum(lengths)
    hidden = ffn_weight_1.shape[0]
    projections = tokens * embed_dim * (3 * embed_dim + embed_dim)
    attention = 2 * sum(length * length for length in lengths) * embed_dim
    return projections + attention + 2 * tokens * embed_dim * hidden


# ---- recurrent kernels ----------------------------------------------------------------------------

def _rnn_rows(input) -> int:
    """Time steps x batch rows the kernel runs (a packed sequence's input is already (sum of batch sizes, in))."""
    return input.numel() // input.shape[-1] if input.dim() else 0


@register_macs("aten::mkldnn_rnn_layer")
def mkldnn_rnn_layer_macs(input, weight_ih, weight_hh, *args, out_val=None, **kwargs) -> int:
    """One layer and direction of the CPU LSTM kernel: both weight matrices once per step and row."""
    return _rnn_rows(input) * (weight_ih.numel() + weight_hh.numel())


@register_macs("aten::_cudnn_rnn")
def cudnn_rnn_macs(input, weights, *args, out_val=None, **kwargs) -> int:
    """All layers and directions at once: every weight matrix (not the bias vectors) once per step and row."""
    return _rnn_rows(input) * sum(w.numel() for w in weights if w.dim() == 2)


@register_macs("aten::miopen_rnn")
def miopen_rnn_macs(input, weights, *args, out_val=None, **kwargs) -> int:
    return cudnn_rnn_macs(input, weights)


# ---- distances ------------------------------------------------------------------------------------

def _pairs(x1, x2) -> int:
    """Broadcast batch x P x R: the pairs of rows a ``cdist`` compares."""
    return math.prod(torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])) * x1.shape[-2] * x2.shape[-2]


@register_macs("aten::_cdist_forward")
def cdist_macs(x1, x2, p, *args, out_val=None, **kwargs) -> int:
    """``torch.cdist`` computed pair by pair: for p = 2, a squared difference accumulated per coordinate of each pair
    (one multiply-add); other p take differences, absolute values, powers and a sum or max, elementwise math and
    reductions, zero by convention (as ``pairwise_distance``'s operators are)."""
    return _pairs(x1, x2) * x1.shape[-1] if p == 2 else 0


@register_macs("aten::_euclidean_dist")
def euclidean_dist_macs(x1, x2, *args, out_val=None, **kwargs) -> int:
    """``cdist``'s matrix-product path (p = 2, more than 25 rows): ``[-2x, |x|², 1] @ [y, 1, |y|²]ᵀ``, a matmul
    over the M coordinates plus the two norm columns; the squared norms are elementwise math and a sum (0)."""
    return _pairs(x1, x2) * (x1.shape[-1] + 2)


# ---- bilinear -------------------------------------------------------------------------------------

@register_macs("aten::_trilinear")
def trilinear_macs(i1, i2, i3, expand1, expand2, expand3, sumdim, *args, out_val=None, **kwargs) -> int:
    """``nn.Bilinear``: one multiply-add per point of the three inputs' broadcast product space."""
    full = []
    for tensor, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        dims = list(tensor.shape)
        for position in sorted(expand):
            dims.insert(position, 1)
        full.append(dims)
    return math.prod(max(sizes) for sizes in zip(*full))


# ---- torchvision ----------------------------------------------------------------------------------

@register_macs("torchvision::deform_conv2d")
def deform_conv2d_macs(input, weight, *args, out_val=None, **kwargs) -> int:
    """As the plain convolution: out elements x (in channels per group x kernel area)."""
    return out_val.numel() * math.prod(weight.shape[1:])


# ---- FFT ------------------------------------------------------------------------------------------

def _fft_macs(full_shape, dims) -> int:
    points = math.prod(full_shape)
    total = 0
    for d in dims:
        n = full_shape[d]
        if n > 1:
            total += points * math.ceil(math.log2(n)) // 2
    return total


def _real_fft_macs(real_shape, spectrum_shape, dims) -> int:
    """A real FFT over ``dims``: the pass over the last of them runs on the real signals, the passes over the others
    on the spectrum that one keeps (its last dim n // 2 + 1 when one-sided), as the kernels run them."""
    *others, last = dims
    return _fft_macs(tuple(real_shape), [last]) + _fft_macs(tuple(spectrum_shape), others)


@register_macs("aten::_fft_r2c")
def fft_r2c_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _real_fft_macs(self.shape, out_val.shape, dim)


@register_macs("aten::_fft_c2c")
def fft_c2c_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_macs(tuple(self.shape), dim)


@register_macs("aten::_fft_c2r")
def fft_c2r_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _real_fft_macs(out_val.shape, self.shape, dim)


# ---- quantized ------------------------------------------------------------------------------------

def quantized_conv_macs(qx, packed, *args, out_val=None, **kwargs) -> int:
    """Integer multiply-adds: the whole packed weight (C_out, C_in/groups, k...) once per output position,
    or, transposed ((C_in, C_out/groups, k...)), once per input position."""
    positions = qx if packed.transpose() else out_val
    return positions.numel() // positions.shape[1] * math.prod(packed.unpack()[0].shape)


def quantized_linear_macs(x, packed, *args, out_val=None, **kwargs) -> int:
    """Integer multiply-adds: out elements x in_features."""
    return out_val.numel() * x.shape[-1]


def _quantized_rnn_macs(gates: int):
    """``aten::quantized_lstm`` / ``quantized_gru`` (dynamic-quantized ``nn.LSTM``/``nn.GRU``), every overload:
    per row and direction, layer 0 runs ``gates*H x (I + H)`` weights, later layers ``gates*H x (dirs*H + H)``
    (the float kernel's count; the packed weights themselves are opaque ``CellParamsBase`` objects)."""
    def macs(input, second, *args, out_val=None, **kwargs) -> int:
        packed = not isinstance(second, (list, tuple)) and second.dim() == 1  # .data: (data, batch_sizes, hx, ...)
        hx, params, _, num_layers, _, _, bidirectional = (args[0], *args[1:7]) if packed else (second, *args[:6])
        hidden = (hx[0] if isinstance(hx, (list, tuple)) else hx).shape[-1]
        dirs = 2 if bidirectional else 1
        per_row = gates * hidden * ((input.shape[-1] + hidden) + (num_layers - 1) * (dirs * hidden + hidden))
        return _rnn_rows(input) * dirs * per_row
    return macs


register_macs("aten::quantized_lstm")(_quantized_rnn_macs(4))
register_macs("aten::quantized_gru")(_quantized_rnn_macs(3))


def quantized_rnn_cell_macs(input, hx, w_ih, w_hh, *args, out_val=None, **kwargs) -> int:
    """Dynamic-quantized RNN cells: both packed weight matrices once per batch row."""
    return _rnn_rows(input) * (w_ih.unpack()[0].numel() + w_hh.unpack()[0].numel())


for _name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    register_macs(f"quantized::quantized_{_name}_cell_dynamic")(quantized_rnn_cell_macs)
for _name in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu",
              "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv2d_add", "conv2d_add_relu"):
    register_macs(f"quantized::{_name}")(quantized_conv_macs)
for _name in ("linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic", "linear_dynamic_fp16",
              "linear_relu_dynamic_fp16", "linear_leaky_relu", "linear_tanh", "linear_with_input_q_dtype_qweight"):
    register_macs(f"quantized::{_name}")(quantized_linear_macs)
