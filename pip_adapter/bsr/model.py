"""``PIPModel``: BasicSR's ``SRModel`` trained and validated with ω (the degradation weights).

What it adds to ``SRModel``:

* ω per batch from the dataset's ``label`` (one-hot) or ``omega`` (soft rows), passed to the network as
  ``net_g(lq, omega)``; a network without PIP levels (a plain backbone: the baselines) is called as
  ``net_g(lq)``, so the same model type trains both;
* loss = pixel loss (``pixel_opt``, L1 by default; ``SmoothL1Loss`` for the release) + α·L_ddl over all PIP
  levels (``ddl_opt: {form: paper|release, theta_thre: 90, loss_weight: 0.002}``);
* every ``torch.optim`` optimizer by name (``Adam``, ``AdamW``, ...) and the ``LinearWarmupCosine`` schedule;
* optional Degradation-Mix on training batches (``train.dmix: {prob: 0.5}``), gradient clipping
  (``train.grad_clip: max_norm``), ``train.trainable: new_prompts|pip|all`` and ``train.zero_init: [ending]``
  (zero a residual network's output layer so training starts from the identity);
* mixed precision (``train.amp: bf16|fp16``; autocast on the tensors' device, a gradient scaler for fp16,
  losses and L_ddl in fp32, weights and checkpoints fp32; validation in ``val.amp``, fp32 by default);
* CPU-safe DDP placement, ``weights_only`` loading, atomic checkpoint and training-state writes;
* validation per task (each val set is one task with its own ω), PSNR/SSIM of the degraded input beside the
  restored one, and the average across tasks, to the log, TensorBoard and ``validation_latest.json``.

The validation (:mod:`pip_adapter.bsr.validation`) and the checkpoint and training-state files
(:mod:`pip_adapter.bsr.checkpoints`) are mixins of their own modules; this one holds set-up, ω and the step.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from pip_adapter.data import degradation_mix
from pip_adapter.modules.ddl_loss import DirectionalDecoupledLoss
from pip_adapter.omega import labels_to_omega, name_to_index, normalise_names, to_omega
from pip_adapter.utils.precision import PRECISIONS, precision_name
from pip_adapter.utils.tensor import pad_to_multiple
from pip_adapter.wrap.extend import apply_trainable
from pip_adapter.wrap.protocol import degradation_names, is_pip_model

from .checkpoints import TrainingCheckpoints, plain_state  # noqa: F401  (plain_state: public here too)
from .scheduler import LinearWarmupCosine
from .validation import TaskValidation

AMP_DTYPES = PRECISIONS  # the one precision table (utils/precision.py), under the name this module gave it


def amp_dtype(value: Any, key: str = "train.amp") -> Optional[torch.dtype]:
    """The autocast dtype of an ``amp`` option (``bf16``, ``fp16``; ``fp32``/``false``/None: no autocast)."""
    name = precision_name(value)
    if name is None:
        raise ValueError(f"{key} must be one of {sorted(PRECISIONS)} (or false), got {value!r}")
    return PRECISIONS[name]


_COMPILE_KEYS = ("backend", "mode", "dynamic", "fullgraph", "options")


def compiled_network(net: torch.nn.Module, option: Any) -> torch.nn.Module:
    """``train.compile``: false/absent → ``net``; true → ``torch.compile(net)``; a dict → its keys
    (``backend``, ``mode``, ``dynamic``, ``fullgraph``, ``options``) passed to ``torch.compile``."""
    if option is None or option is False:
        return net
    if option is True:
        kwargs: Dict[str, Any] = {}
    elif isinstance(option, Mapping):
        kwargs = dict(option)
        unknown = sorted(set(kwargs) - set(_COMPILE_KEYS))
        if unknown:
            raise ValueError(f"train.compile: unknown key(s) {unknown}; allowed: {list(_COMPILE_KEYS)} "
                             "(e.g. compile: {backend: aot_eager}), or compile: true for the default")
    else:
        raise ValueError(f"train.compile must be true/false or a dict of torch.compile options, got {option!r}")
    get_root_logger().info(f"training step compiled with torch.compile({kwargs})")
    return torch.compile(net, **kwargs)


class PIPModel(TaskValidation, TrainingCheckpoints, SRModel):
    """BasicSR model for PIP networks (and plain backbones) with ω taken from each batch."""

    def __init__(self, opt: Dict[str, Any]) -> None:
        self._validating = False
        self._val_round: Dict[str, Dict[str, Dict[str, float]]] = {}
        self._input_metric_cache: Dict[str, Dict[str, float]] = {}
        self.last_validation: Optional[Dict[str, Any]] = None
        self.amp_dtype = amp_dtype((opt.get("train") or {}).get("amp")) if opt.get("is_train", True) else None
        self.val_amp_dtype = amp_dtype((opt.get("val") or {}).get("amp"), "val.amp")
        self.grad_scaler: Optional[torch.amp.GradScaler] = None
        super().__init__(opt)
        self._train_label_names = self._dataset_names((opt.get("datasets") or {}).get("train"))
        self._label_names = self._train_label_names

    # ------------------------------------------------------------------ network
    @property
    def bare_net(self) -> torch.nn.Module:
        """``net_g`` without its DDP / DataParallel wrapper."""
        return self.get_bare_model(self.net_g)

    @property
    def uses_omega(self) -> bool:
        """True when the network takes ω (it has PIP levels)."""
        return is_pip_model(self.bare_net)

    @property
    def degradation_names(self) -> List[str]:
        """The network's ordered degradation names (ω columns)."""
        return degradation_names(self.bare_net)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        """Move ``net`` to the device and wrap it for DDP (``device_ids`` only on CUDA) or DataParallel."""
        trainable = (self.opt.get("train") or {}).get("trainable") if self.is_train else None
        if trainable:
            # requires_grad must be final before DDP registers its gradient hooks
            apply_trainable(net, trainable)
            get_root_logger().info(f"Trainable parameters: {trainable}")
        net = net.to(self.device)
        if self.opt["dist"]:
            kwargs = {"find_unused_parameters": self.opt.get("find_unused_parameters", False)}
            if self.device.type == "cuda":
                kwargs["device_ids"] = [torch.cuda.current_device()]
            net = DistributedDataParallel(net, **kwargs)
        elif self.opt["num_gpu"] > 1:
            net = DataParallel(net)
        return net

    # ------------------------------------------------------------------ training set-up
    def init_training_settings(self) -> None:
        """SRModel's set-up with an L1 default, L_ddl, Degradation-Mix and gradient clipping."""
        train_opt = self.opt["train"]
        if not train_opt.get("pixel_opt") and not train_opt.get("perceptual_opt"):
            train_opt["pixel_opt"] = {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}
        self.cri_ddl = None
        ddl_opt = train_opt.get("ddl_opt")
        if ddl_opt and float(ddl_opt.get("loss_weight", 0.002)) > 0:
            if not self.uses_omega:
                get_root_logger().warning("ddl_opt is set but the network has no PIP levels: L_ddl is skipped.")
            else:
                kwargs = {k: v for k, v in ddl_opt.items() if k != "type"}
                self.cri_ddl = DirectionalDecoupledLoss(**kwargs).to(self.device)
        dmix = train_opt.get("dmix") or {}
        self.dmix_prob = float(dmix.get("prob", 0.0)) if dmix else 0.0
        if not 0.0 <= self.dmix_prob <= 1.0:
            raise ValueError(f"train.dmix.prob must lie in [0, 1], got {self.dmix_prob}")
        self._dmix_gen = torch.Generator().manual_seed(int(self.opt.get("manual_seed") or 0) + self.opt["rank"])
        self.grad_clip = float(train_opt.get("grad_clip", 0) or 0)
        if self.amp_dtype is not None:
            # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none
            if self.amp_dtype == torch.float16:
                self.grad_scaler = torch.amp.GradScaler(self.device.type)
            get_root_logger().info(f"Mixed precision: autocast to {self.amp_dtype} on {self.device.type}"
                                   + (" with a gradient scaler" if self.grad_scaler else ""))
        if train_opt.get("zero_init") and self.opt["path"].get("pretrain_network_g") is None:
            self._zero_init(train_opt["zero_init"])
        super().init_training_settings()
        # the training step may run compiled; net_g itself (saving, EMA, validation) stays the plain module
        self._train_net = compiled_network(self.net_g, train_opt.get("compile"))

    def _zero_init(self, names: Any) -> None:
        """Zero the weights and biases of the named modules (e.g. ``ending``, the output conv of a
        residual network, so that training starts from the identity mapping)."""
        names = [names] if isinstance(names, str) else list(names)
        found = []
        for qual, module in self.bare_net.named_modules():
            if any(qual == n or qual.endswith("." + n) for n in names):
                with torch.no_grad():
                    for p in module.parameters(recurse=False):
                        p.zero_()
                found.append(qual)
        missing = [n for n in names if not any(q == n or q.endswith("." + n) for q in found)]
        if missing:
            raise ValueError(f"train.zero_init: no module named {missing} in network_g")
        get_root_logger().info(f"Zero-initialised: {', '.join(found)}")

    def setup_optimizers(self) -> None:
        """One optimizer over the parameters that require gradients (one log line for the frozen ones)."""
        train_opt = self.opt["train"]
        params, frozen = [], 0
        for _, v in self.net_g.named_parameters():
            if v.requires_grad:
                params.append(v)
            else:
                frozen += v.numel()
        if not params:
            raise ValueError("no parameter of network_g requires gradients: check train.trainable")
        if frozen:
            get_root_logger().info(f"{frozen:,d} frozen parameters will not be optimized.")
        optim_opt = dict(train_opt["optim_g"])
        optim_type = optim_opt.pop("type")
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        """Any ``torch.optim`` optimizer by class name (``Adam``, ``AdamW``, ``SGD``, ...)."""
        cls = getattr(torch.optim, str(optim_type), None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            known = sorted(n for n, c in vars(torch.optim).items()
                           if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and n != "Optimizer")
            raise ValueError(f"unknown optimizer type {optim_type!r}; torch.optim offers: {', '.join(known)}")
        if "betas" in kwargs and isinstance(kwargs["betas"], list):
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(params, lr=float(lr), **kwargs)

    def setup_schedulers(self) -> None:
        """BasicSR's schedulers plus ``LinearWarmupCosine`` (spec §8)."""
        train_opt = self.opt["train"]
        sched_opt = dict(train_opt.get("scheduler") or {})
        if sched_opt.get("type") != "LinearWarmupCosine":
            if not sched_opt:
                return  # constant learning rate
            return super().setup_schedulers()
        sched_opt.pop("type")
        if float(train_opt.get("warmup_iter", -1)) > 0:
            get_root_logger().warning("train.warmup_iter and LinearWarmupCosine both warm up; "
                                      "set the warm-up in scheduler.warmup_iter only.")
        sched_opt.setdefault("total_iter", train_opt["total_iter"])
        for optimizer in self.optimizers:
            self.schedulers.append(LinearWarmupCosine(optimizer, **sched_opt))

    # ------------------------------------------------------------------ data and ω
    def _dataset_names(self, dataset_opt: Optional[Dict[str, Any]]) -> Optional[List[str]]:
        """The degradation names a dataset's labels index (its ``degradations`` option, else the default)."""
        if not self.uses_omega or dataset_opt is None:
            return None
        return normalise_names(dataset_opt.get("degradations"))

    def _omega_from_batch(self, data: Dict[str, Any], batch_size: int) -> torch.Tensor:
        names = self.degradation_names
        if data.get("omega") is not None:
            return to_omega(torch.as_tensor(data["omega"]).float(), names, batch_size, self.device)
        if data.get("degradation") is not None:
            deg = data["degradation"]
            deg = [deg] * batch_size if isinstance(deg, str) else list(deg)
            idx = torch.tensor([name_to_index(n, names) for n in deg])
            return labels_to_omega(idx, len(names)).to(self.device)
        if data.get("label") is not None:
            labels = torch.as_tensor(data["label"]).reshape(-1)
            label_names = self._label_names
            if label_names is not None and list(label_names) != names:
                # the dataset numbers its types in its own order: map through the names
                try:
                    lut = torch.tensor([name_to_index(n, names) for n in label_names])
                except ValueError as err:
                    raise ValueError(f"a dataset's degradation type is unknown to the network: {err}") from None
                if labels.numel() and (labels.min() < 0 or labels.max() >= len(label_names)):
                    raise ValueError(f"labels {labels.tolist()} out of range for the dataset's types {label_names}")
                labels = lut[labels.long()]
            return labels_to_omega(labels, len(names)).to(self.device)
        raise ValueError("PIPModel needs each batch to carry 'label' (int per image) or 'omega' (B×T weights); "
                         "use a dataset that yields them, e.g. MixedDegradationDataset")

    def feed_data(self, data: Dict[str, Any]) -> None:
        """Move a batch to the device and derive ω (Degradation-Mix on training batches if enabled)."""
        self.lq = data["lq"].to(self.device)
        if "gt" in data:
            self.gt = data["gt"].to(self.device)
        self.omega = self._omega_from_batch(data, self.lq.shape[0]) if self.uses_omega else None
        if (self.is_train and not self._validating and getattr(self, "dmix_prob", 0) > 0
                and self.omega is not None and hasattr(self, "gt")
                and torch.rand(1, generator=self._dmix_gen).item() < self.dmix_prob):
            self.lq, self.gt, self.omega = degradation_mix(self.lq, self.gt, self.omega, generator=self._dmix_gen)

    def _run(self, net: torch.nn.Module, lq: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The network's output for ``lq``, under autocast to ``dtype`` when given; always float32."""
        with torch.autocast(lq.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            out = net(lq, self.omega) if self.omega is not None else net(lq)
        return out.float()

    # ------------------------------------------------------------------ optimisation
    def optimize_parameters(self, current_iter: int) -> None:
        """One step on L_pix (+ perceptual) + α·L_ddl."""
        self.optimizer_g.zero_grad(set_to_none=True)
        # only the network runs under autocast: the losses (L_ddl included) see float32 tensors
        self.output = self._run(getattr(self, "_train_net", self.net_g), self.lq, self.amp_dtype)

        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total = l_total + l_pix
            loss_dict["l_pix"] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                l_total = l_total + l_percep
                loss_dict["l_percep"] = l_percep
            if l_style is not None:
                l_total = l_total + l_style
                loss_dict["l_style"] = l_style
        if self.cri_ddl is not None:
            prompts = [level.all_degradation_prompts() for level in self.bare_net.pip_levels]
            l_ddl = self.cri_ddl(prompts)
            l_total = l_total + l_ddl
            loss_dict["l_ddl"] = l_ddl

        scaler = self.grad_scaler
        if scaler is not None:
            scaler.scale(l_total).backward()
            if self.grad_clip > 0:
                scaler.unscale_(self.optimizer_g)
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
            scaler.step(self.optimizer_g)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            l_total.backward()
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
            self.optimizer_g.step()

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def model_ema(self, decay: float = 0.999) -> None:
        """BasicSR's EMA update, skipping frozen parameters (``train.trainable``).

        ``ema·d + x·(1−d)`` is not bit-exact even when ``ema == x``, and ``params_ema`` may differ from
        ``params``: updating frozen parameters would move the EMA model's old degradation types.
        """
        net_g_params = dict(self.get_bare_model(self.net_g).named_parameters())
        for name, param in self.net_g_ema.named_parameters():
            src = net_g_params[name]
            if decay == 0:
                param.data.copy_(src.data)
            elif src.requires_grad:
                param.data.mul_(decay).add_(src.data, alpha=1 - decay)

    # ------------------------------------------------------------------ inference
    def test(self) -> None:
        """Restore ``self.lq`` with ω, padding to ``val.pad_multiple`` (default 16) and cropping back."""
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.bare_net
        # the bare network: DDP's forward may broadcast buffers, which would hang when only rank 0 validates
        was_training = net.training
        multiple = int((self.opt.get("val") or {}).get("pad_multiple", 16) or 1)
        h, w = self.lq.shape[-2:]
        lq = pad_to_multiple(self.lq, multiple)
        net.eval()
        with torch.no_grad():
            out = self._run(net, lq, self.val_amp_dtype)
        if was_training:
            net.train()
        self.output = out[..., :h, :w]
