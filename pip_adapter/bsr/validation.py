"""Validation of ``PIPModel``: one task per val set (ω from its items), input metrics beside the restored ones,
the average across tasks to the log, TensorBoard and ``validation_latest.json``.

A mixin of :class:`pip_adapter.bsr.model.PIPModel`, which provides ``feed_data``, ``test`` and the label names.
"""
from __future__ import annotations

import json
from os import path as osp

import numpy as np
import torch

from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only

from pip_adapter.utils.io import atomic_write

_VAL_PHASES = ("val", "test")


def _to_metric_image(t: torch.Tensor, quantize: bool) -> np.ndarray:
    """CHW float tensor in [0, 1] → HWC float64 array in [0, 255], BGR like BasicSR's ``tensor2img``."""
    img = t.detach().float().clamp(0, 1).cpu()
    if quantize:
        img = (img * 255.0).round() / 255.0
    arr = img.permute(1, 2, 0).numpy().astype(np.float64) * 255.0
    if arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


class TaskValidation:
    """BasicSR's validation hooks, per task (mixed into ``PIPModel`` before ``SRModel``)."""

    def _num_val_sets(self) -> int:
        return sum(1 for k in self.opt.get("datasets", {}) if k.split("_")[0] in _VAL_PHASES)

    def validation(self, dataloader, current_iter, tb_logger, save_img: bool = False) -> None:
        """BasicSR's validation, labelled with the last iteration actually trained.

        BasicSR's loop leaves ``current_iter`` one past ``total_iter`` for every epoch it enters after the
        last step, so its final validation would read "@ 22 iter" after 20 iterations.
        """
        if self.is_train and isinstance(current_iter, int):
            total = (self.opt.get("train") or {}).get("total_iter")
            if total is not None and current_iter > int(total):
                current_iter = int(total)
        super().validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        """Validate one task (one val set, ω from its items); log its metrics and, after the last task, the mean."""
        dataset_name = dataloader.dataset.opt["name"]
        val_opt = self.opt.get("val") or {}
        metrics_opt = val_opt.get("metrics") or {}
        quantize = bool(val_opt.get("quantize", False))
        want_input = bool(val_opt.get("input_metrics", True)) and dataset_name not in self._input_metric_cache
        if metrics_opt:
            self._initialize_best_metric_results(dataset_name)
        sums = {name: 0.0 for name in metrics_opt}
        input_sums = {name: 0.0 for name in metrics_opt}
        count = 0
        self._validating = True
        self._label_names = self._dataset_names(getattr(dataloader.dataset, "opt", None))
        try:
            for val_data in dataloader:
                self.feed_data(val_data)
                self.test()
                for i in range(self.output.shape[0]):
                    img_name = osp.splitext(osp.basename(val_data["lq_path"][i]))[0]
                    sr = self.output[i]
                    if save_img:
                        self._save_visual(sr, dataset_name, img_name, current_iter)
                    if metrics_opt and hasattr(self, "gt"):
                        gt_img = _to_metric_image(self.gt[i], quantize)
                        sr_img = _to_metric_image(sr, quantize)
                        for name, mopt in metrics_opt.items():
                            sums[name] += float(calculate_metric({"img": sr_img, "img2": gt_img}, mopt))
                        if want_input and self.lq[i].shape == self.gt[i].shape:
                            lq_img = _to_metric_image(self.lq[i], quantize)
                            for name, mopt in metrics_opt.items():
                                input_sums[name] += float(calculate_metric({"img": lq_img, "img2": gt_img}, mopt))
                    count += 1
                for attr in ("lq", "gt", "output"):
                    if hasattr(self, attr):
                        delattr(self, attr)
        finally:
            self._validating = False
            self._label_names = self._train_label_names
        if not metrics_opt or count == 0:
            return
        self.metric_results = {name: total / count for name, total in sums.items()}
        if want_input:
            self._input_metric_cache[dataset_name] = {name: total / count for name, total in input_sums.items()}
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        self._record_task(current_iter, dataset_name, tb_logger)

    def _save_visual(self, img: torch.Tensor, dataset_name: str, img_name: str, current_iter) -> None:
        if self.opt["is_train"]:
            path = osp.join(self.opt["path"]["visualization"], dataset_name, f"{img_name}_{current_iter}.png")
        else:
            suffix = (self.opt.get("val") or {}).get("suffix") or self.opt["name"]
            path = osp.join(self.opt["path"]["visualization"], dataset_name, f"{img_name}_{suffix}.png")
        imwrite(tensor2img([img.detach().cpu()]), path)

    def _log_validation_metric_values(self, current_iter, dataset_name: str, tb_logger) -> None:
        inputs = self._input_metric_cache.get(dataset_name, {})
        log_str = f"Validation {dataset_name}\n"
        for metric, value in self.metric_results.items():
            log_str += f"\t # {metric}: {value:.4f}"
            if metric in inputs:
                log_str += f"\t(input: {inputs[metric]:.4f})"
            if isinstance(current_iter, int):  # `basicsr test` passes the run's name: no "best" to report
                best = self.best_metric_results[dataset_name][metric]
                log_str += f"\tBest: {best['val']:.4f} @ {best['iter']} iter"
            log_str += "\n"
        get_root_logger().info(log_str)
        if tb_logger and isinstance(current_iter, int):
            for metric, value in self.metric_results.items():
                tb_logger.add_scalar(f"metrics/{dataset_name}/{metric}", value, current_iter)

    def _record_task(self, current_iter, dataset_name: str, tb_logger) -> None:
        """Keep this task's results; once every val set of this round is in, log and save the average."""
        key = str(current_iter)
        round_ = self._val_round.setdefault(key, {})
        round_[dataset_name] = dict(self.metric_results)
        if len(round_) < self._num_val_sets():
            return
        del self._val_round[key]
        metrics = list(self.metric_results)
        average = {m: float(np.mean([r[m] for r in round_.values()])) for m in metrics}
        inputs = {name: self._input_metric_cache.get(name, {}) for name in round_}
        log_str = f"Validation average over {len(round_)} tasks\n"
        for m in metrics:
            log_str += f"\t # {m}: {average[m]:.4f}\n"
        get_root_logger().info(log_str)
        if tb_logger and isinstance(current_iter, int):
            for m, value in average.items():
                tb_logger.add_scalar(f"metrics/average/{m}", value, current_iter)
        self.last_validation = {
            "iter": current_iter,
            "tasks": {name: {**res, **{f"input_{m}": v for m, v in inputs[name].items()}}
                      for name, res in round_.items()},
            "average": average,
        }
        self._write_validation_summary()

    @master_only
    def _write_validation_summary(self) -> None:
        path = osp.join(self.opt["path"]["log"], "validation_latest.json")

        def _write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.last_validation, fh, indent=2, default=str)

        atomic_write(path, _write)
