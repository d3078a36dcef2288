"""Training losses: the task's own loss on gold labels, and the distillation loss that mixes it
with a teacher's outputs (and, optionally, its layers' first-token or every-token vectors).

Both compute in fp32 whatever the forward pass ran in, so a bf16 or fp16 run sums its loss
the way an fp32 run does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bertfit.model.taps import FirstTokenTap, LayerRows, TeacherShadow
from bertfit.problem import MULTI_LABEL, REGRESSION, ProblemType

#: The class id of a row with no gold label (augmented inputs), as PyTorch's ``ignore_index``.
NO_LABEL_CLASS = -100


def task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: ProblemType,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The task's loss of ``logits`` against the gold labels.

    Single-label: mean cross-entropy of class ``logits`` [B, C] against class ids, each
    example's term multiplied by its class's weight when ``class_weights`` [C] are given. The
    mean stays one over examples (PyTorch's ``weight=`` would divide by the batch's summed
    weights instead), so that shards and accumulated micro-batches add up to the loss of the
    whole batch, as they do unweighted; balanced weights average 1 over the training set.
    Multi-label: binary cross-entropy
    of each of the C logits against the 0/1 targets [B, C], averaged over examples and labels,
    ``class_weights`` being each label's positive weight (``pos_weight``). Regression
    (``logits`` [B, 1]): the mean squared error against the target scores.
    """
    if problem_type == REGRESSION:
        return F.mse_loss(logits.squeeze(-1).float(), labels)
    if problem_type == MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), pos_weight=class_weights
        )
    if class_weights is None:
        return F.cross_entropy(logits.float(), labels)
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (losses * class_weights[labels]).mean()


def soft_target_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    problem_type: ProblemType,
) -> torch.Tensor:
    """The student's loss against the teacher's outputs.

    Classification: ``T**2 * KL(p_T || q_T)`` with ``p_T = softmax(teacher_logits / T)`` and
    ``q_T = softmax(logits / T)``, the KL summed over classes and averaged over examples
    (``reduction="batchmean"``); the ``T**2`` keeps its gradients the size of the hard loss's
    as ``T`` changes (Hinton et al., 2015). Regression: the mean squared error between the
    student's and the teacher's scores (``temperature`` does not apply).
    """
    if problem_type == REGRESSION:
        return F.mse_loss(logits.float(), teacher_logits.float())
    student = F.log_softmax(logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return temperature**2 * kl


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    alpha: float,
    problem_type: ProblemType,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha * task_loss(logits, labels) + (1 - alpha) * soft_target_loss(...)``, the task's
    loss over the rows that have a gold label (:func:`labelled_task_loss`), with the run's
    ``class_weights`` if any.

    ``alpha`` 1 is exactly :func:`task_loss` (the teacher's term is not computed, so the loss
    and its gradients are bit for bit those of ordinary training); ``alpha`` 0 learns from the
    teacher alone.
    """
    if alpha == 1:
        return task_loss(logits, labels, problem_type, class_weights)
    soft = soft_target_loss(logits, teacher_logits, temperature, problem_type)
    if alpha == 0:
        return soft
    gold = labelled_task_loss(logits, labels, problem_type, class_weights)
    return alpha * gold + (1 - alpha) * soft


def labelled_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: ProblemType,
    class_weights: torch.Tensor | None = None,
):
    """:func:`task_loss` over the rows that have a gold label, 0 when none has.

    Rows without one (augmented inputs, see :mod:`bertfit.train.augment`) are marked by the
    class id ``NO_LABEL_CLASS`` or a NaN score. A batch whose rows all have labels gets exactly
    :func:`task_loss`.
    """
    missing = labels.isnan() if problem_type == REGRESSION else labels == NO_LABEL_CLASS
    if not bool(missing.any()):
        return task_loss(logits, labels, problem_type, class_weights)
    keep = ~missing
    if not bool(keep.any()):
        return logits.float().sum() * 0.0  # no gold rows: nothing to learn, a graph to keep
    return task_loss(logits[keep], labels[keep], problem_type, class_weights)


def layer_match_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Patient Knowledge Distillation's intermediate loss (Sun et al., 2019): the squared
    distance between the L2-normalized first-token vectors of each student layer and of its
    teacher layer, both [B, k, H], summed over H and averaged over the k layers and B rows.

    Normalized, each term lies in [0, 4] whatever the layers' scales.
    """
    student = F.normalize(student.float(), dim=-1)
    teacher = F.normalize(teacher.float(), dim=-1)
    return (student - teacher).pow(2).sum(-1).mean()


def token_match_loss(pairs: list[tuple[LayerRows, LayerRows]]) -> torch.Tensor:
    """TinyBERT's hidden-state loss, normalized as :func:`layer_match_loss` is: for each
    (student, teacher) layer pair, the mean over real tokens of the squared distance between
    their L2-normalized vectors, averaged over the pairs.

    A pair where either side computed first tokens only (the padding-free last layer) is matched on
    its first-token vectors.
    """
    terms = []
    for student, teacher in pairs:
        if student.tokens is not None and teacher.tokens is not None:
            terms.append(layer_match_loss(student.tokens, teacher.tokens))
        else:
            terms.append(layer_match_loss(student.first, teacher.first))
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class DistillationLoss:
    """:func:`distillation_loss` as the trainer's loss hook: ``loss(logits, labels, targets)``
    with the teacher's outputs of the batch as ``targets``.

    With ``layer_weight`` > 0, ``targets`` [B, C + k * H] also carry the teacher's first-token
    vectors of the layers the student's k layers match, after its C logits, and the loss adds
    ``layer_weight * layer_match_loss(...)`` against the student's own, which ``tap`` read in
    the forward pass that made ``logits``.

    With ``token_weight`` > 0, the loss adds ``token_weight * token_match_loss(...)`` of the
    layer pairs ``shadow`` read in that forward pass (the teacher run on the same batch).
    """

    temperature: float
    alpha: float
    problem_type: ProblemType
    layer_weight: float = 0.0
    tap: FirstTokenTap | None = None
    token_weight: float = 0.0
    shadow: TeacherShadow | None = None
    # The run's class weights (bertfit.train.class_weights) on the gold-label term.
    class_weights: torch.Tensor | None = None

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        if targets is None:
            raise ValueError("distillation needs the teacher's logits with the training data")
        outputs = logits.shape[-1]
        weights = self.class_weights
        if weights is not None and weights.device != logits.device:
            weights = weights.to(logits.device)
        loss = distillation_loss(
            logits,
            labels,
            targets[:, :outputs],
            self.temperature,
            self.alpha,
            self.problem_type,
            weights,
        )
        if self.layer_weight:
            if self.tap is None:
                raise ValueError("layer matching needs a tap on the student's layers")
            student = self.tap.stacked()
            teacher = targets[:, outputs:].reshape(student.shape)
            loss = loss + self.layer_weight * layer_match_loss(student, teacher)
        if self.token_weight:
            if self.shadow is None:
                raise ValueError("token matching needs the teacher run alongside the student")
            loss = loss + self.token_weight * token_match_loss(self.shadow.pairs())
        return loss
