"""``DegradationClassifierModel``: BasicSR model that trains the degradation classifier used for automatic ω.

It reuses :class:`~pip_adapter.bsr.model.PIPModel`'s plumbing (device placement, optimizers by name, schedules,
atomic ``weights_only`` checkpoints with their ``meta``) and replaces what is specific to classification:
the batch's ``lq`` image is the input and its ``label`` (the task label of the mixed data set) the target —
or, when the batch carries ``omega`` (B×T weights: a composite of several degradations is multi-hot), that row
normalised to sum 1 as a soft target, so that the softmax of a composite spreads over its parts and
``--auto-mode weights`` gives a multi-hot ω; the loss is cross-entropy; validation reports the accuracy of each
val set (one task each in the built-in options; a composite counts as right when its k most probable types are
its k parts), the accuracy per degradation type, and writes ``classifier_validation_latest.json`` in the log
folder.

The arch ``DegradationClassifier`` is :class:`pip_adapter.restore.classifier.DegradationClassifier`.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from os import path as osp
from typing import Any, Dict, List

import torch
from torch.nn import functional as F

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

from pip_adapter.omega import to_omega
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.utils.io import atomic_write

from .model import PIPModel
from .registration import register_once


class DegradationClassifierModel(PIPModel):
    """Cross-entropy training of a :class:`DegradationClassifier` on (lq, label) batches."""

    # ------------------------------------------------------------------ set-up
    def init_training_settings(self) -> None:
        """Optimizer and schedule only (no pixel losses, no EMA)."""
        self.net_g.train()
        train_opt = self.opt["train"]
        self.ema_decay = 0
        self.label_smoothing = float(train_opt.get("label_smoothing", 0.0) or 0.0)
        self.grad_clip = float(train_opt.get("grad_clip", 0) or 0)
        self.dmix_prob = 0.0
        # the dataset degrades whole training crops (gt_size) so synthetic degradations have the scale they
        # have on real images; the network then sees a random crop_size window of each, as at inference
        self.train_crop = int(train_opt.get("crop_size", 0) or getattr(self.bare_net, "crop_size", 0) or 0)
        self._crop_gen = torch.Generator().manual_seed(int(self.opt.get("manual_seed") or 0) + 7)
        self.setup_optimizers()
        self.setup_schedulers()

    @property
    def uses_omega(self) -> bool:  # the classifier predicts ω; it never takes it
        return False

    # ------------------------------------------------------------------ data
    def feed_data(self, data: Dict[str, Any]) -> None:
        """``lq`` → input; ``omega`` (B×T, soft/multi-hot) or else ``label`` (int per image) → target."""
        self.lq = data["lq"].to(self.device)
        num_types = len(self.degradation_names)
        if data.get("omega") is not None:
            w = to_omega(torch.as_tensor(data["omega"]).float(), self.degradation_names, self.lq.shape[0])
            self.target = (w / w.sum(dim=1, keepdim=True)).to(self.device)
            self.label = self.target.argmax(dim=1)
            self._crop_for_training()
            return
        if data.get("label") is None:
            raise ValueError("the degradation classifier needs a 'label' per image (its degradation type) or an "
                             "'omega' row; use MixedDegradationDataset")
        self.label = torch.as_tensor(data["label"]).reshape(-1).long().to(self.device)
        if self.label.numel() and (self.label.min() < 0 or self.label.max() >= num_types):
            raise ValueError(f"labels {sorted(set(self.label.tolist()))} do not fit the classifier's "
                             f"{num_types} types {self.degradation_names}")
        self.target = F.one_hot(self.label, num_types).float()
        self._crop_for_training()

    def _crop_for_training(self) -> None:
        crop = getattr(self, "train_crop", 0)
        if self.is_train and not self._validating and crop and min(self.lq.shape[-2:]) > crop:
            self.lq = self._random_crops(self.lq, crop)

    def _random_crops(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """One random ``size``×``size`` window per image of a B×3×H×W batch."""
        h, w = x.shape[-2:]
        tops = torch.randint(0, h - size + 1, (x.shape[0],), generator=self._crop_gen).tolist()
        lefts = torch.randint(0, w - size + 1, (x.shape[0],), generator=self._crop_gen).tolist()
        return torch.stack([img[:, t:t + size, l:l + size] for img, t, l in zip(x, tops, lefts)])

    # ------------------------------------------------------------------ optimisation
    def optimize_parameters(self, current_iter: int) -> None:
        """One cross-entropy step; logs the loss and the batch accuracy."""
        self.optimizer_g.zero_grad(set_to_none=True)
        logits = self.net_g(self.lq)
        # soft targets (one-hot for single types): cross-entropy against a distribution
        loss = F.cross_entropy(logits, self.target, label_smoothing=self.label_smoothing)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
        self.optimizer_g.step()
        acc = _parts_correct(logits.detach(), self.target).float().mean()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_ce=loss.detach(), acc=acc))

    @torch.no_grad()
    def test(self) -> None:
        """Class probabilities of ``self.lq`` (averaged over each image's native-resolution crops)."""
        net = self.bare_net
        was_training = net.training
        net.eval()
        try:
            self.output = torch.stack([net.predict_proba(img) for img in self.lq])
        finally:
            net.train(was_training)

    # ------------------------------------------------------------------ validation
    def dist_validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        """Only rank 0 validates (the sets are small); BasicSR calls this on every rank."""
        if self.opt["rank"] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        """Accuracy of this val set and per type; ``self.last_validation`` holds every set of the round."""
        dataset_name = dataloader.dataset.opt["name"]
        names = self.degradation_names
        correct = torch.zeros(len(names))
        total = torch.zeros(len(names))
        confusion = torch.zeros(len(names), len(names), dtype=torch.long)
        images = images_right = 0
        single_right = torch.zeros(len(names))
        single_total = torch.zeros(len(names))
        self._validating = True
        try:
            for val_data in dataloader:
                self.feed_data(val_data)
                self.test()
                target = self.target.cpu()
                pred = self.output.argmax(1).cpu()
                right = _parts_correct(self.output.cpu(), target)
                for row, p, ok in zip(target, pred.tolist(), right.tolist()):
                    images += 1
                    images_right += int(ok)
                    # a composite counts once for each of its parts in the per-type figures
                    parts = torch.nonzero(row > 0).flatten().tolist()
                    for t in parts:
                        confusion[t, p] += 1
                        total[t] += 1
                        correct[t] += int(ok)
                    if len(parts) == 1:
                        single_total[parts[0]] += 1
                        single_right[parts[0]] += int(ok)
        finally:
            self._validating = False
            for attr in ("lq", "label", "target", "output"):
                if hasattr(self, attr):
                    delattr(self, attr)
        if images == 0:
            return
        acc = images_right / images
        self.metric_results = {"acc": acc}
        per_type = {n: float(correct[i] / total[i]) for i, n in enumerate(names) if total[i] > 0}
        if "acc" in ((self.opt.get("val") or {}).get("metrics") or {}):
            self._initialize_best_metric_results(dataset_name)
            self._update_best_metric_result(dataset_name, "acc", acc, current_iter)
        log = get_root_logger()
        log.info(f"Validation {dataset_name}: accuracy {acc:.4f} over {images} images; "
                 + ", ".join(f"{n} {a:.3f}" for n, a in per_type.items()))
        if tb_logger and isinstance(current_iter, int):
            tb_logger.add_scalar(f"metrics/{dataset_name}/acc", acc, current_iter)
        round_ = self._val_round.setdefault(str(current_iter), {})
        round_[dataset_name] = {"acc": acc, "per_type": per_type, "count": images, "right": images_right,
                                "type_right": correct.tolist(), "type_total": total.tolist(),
                                "single_right": single_right.tolist(), "single_total": single_total.tolist(),
                                "confusion": confusion.tolist()}
        if len(round_) >= max(1, self._num_val_sets()):
            del self._val_round[str(current_iter)]
            self._finish_round(current_iter, round_, names, tb_logger)

    def _finish_round(self, current_iter, round_: Dict[str, Dict[str, Any]], names: List[str], tb_logger) -> None:
        confusion = torch.zeros(len(names), len(names), dtype=torch.long)
        sums = {k: torch.zeros(len(names)) for k in ("type_right", "type_total", "single_right", "single_total")}
        for res in round_.values():
            confusion += torch.tensor(res["confusion"], dtype=torch.long)
            for k in sums:
                sums[k] += torch.tensor(res[k])
        # per type: every image holding that type (a composite right when its top-k are its k parts);
        # per_type_single: the images of that type alone
        per_type = {n: float(sums["type_right"][i] / sums["type_total"][i])
                    for i, n in enumerate(names) if sums["type_total"][i] > 0}
        per_type_single = {n: float(sums["single_right"][i] / sums["single_total"][i])
                           for i, n in enumerate(names) if sums["single_total"][i] > 0}
        overall = sum(r["right"] for r in round_.values()) / max(1, sum(r["count"] for r in round_.values()))
        get_root_logger().info(f"Classifier accuracy overall {overall:.4f}; per type: "
                               + ", ".join(f"{n} {a:.3f}" for n, a in per_type.items())
                               + (("; single types: " + ", ".join(f"{n} {a:.3f}" for n, a in per_type_single.items()))
                                  if per_type_single != per_type else ""))
        if tb_logger and isinstance(current_iter, int):
            tb_logger.add_scalar("metrics/average/acc", overall, current_iter)
        self.last_validation = {"iter": current_iter, "accuracy": overall, "per_type": per_type,
                                "per_type_single": per_type_single, "sets": round_, "labels": names, "confusion": confusion.tolist()}
        self._write_classifier_summary()

    @master_only
    def _write_classifier_summary(self) -> None:
        path = osp.join(self.opt["path"]["log"], "classifier_validation_latest.json")

        def _write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.last_validation, fh, indent=2, default=str)

        atomic_write(path, _write)


def _parts_correct(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row: whether the k highest ``scores`` are exactly the k types with weight in ``target`` (k = 1 for a
    single type: the argmax)."""
    k = (target > 0).sum(dim=1)
    order = scores.argsort(dim=1, descending=True)
    out = torch.zeros(scores.shape[0], dtype=torch.bool)
    for i in range(scores.shape[0]):
        top = set(order[i, :int(k[i])].tolist())
        out[i] = top == set(torch.nonzero(target[i] > 0).flatten().tolist())
    return out.to(scores.device)


def register(model_registry=MODEL_REGISTRY, arch_registry=ARCH_REGISTRY) -> None:
    """Register the model and its arch with BasicSR (idempotent)."""
    register_once(model_registry, DegradationClassifierModel)
    register_once(arch_registry, DegradationClassifier)


register()
