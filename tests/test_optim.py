"""Optimizers, paramwise options, wrappers (accumulation, clipping, AMP), lr schedulers and EMA.

Reference numbers were produced with mmengine 0.10.7 (the /work/mmref venv) and are recorded here.
"""
import copy
import logging
import math

import pytest
import torch
from torch import nn

from optim import (
    AmpOptimWrapper,
    ExpMomentumEMA,
    ExponentialMovingAverage,
    build_ema,
    build_optimizer,
    build_schedulers,
    ema_config,
    fast_kernel_args,
    scale_lr,
)
from tests.conftest import clear_project_logger
from utils.logger import LOGGER_NAME, get_logger


def lr_trace(cfgs, iters_per_epoch, max_epochs, lr, points):
    """Run the schedule like the train loop: iter schedulers after each iter, epoch ones after each epoch."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=lr)
    scheds = build_schedulers(opt, cfgs, iters_per_epoch, max_epochs)
    out, it = {}, 0
    for _ in range(max_epochs):
        for _ in range(iters_per_epoch):
            if it in points:
                out[it] = opt.param_groups[0]['lr']
            for s in scheds:
                if not s.by_epoch:
                    s.step()
            it += 1
        for s in scheds:
            if s.by_epoch:
                s.step()
    return out


# (iters_per_epoch, max_epochs, base lr, schedulers, {iteration: lr from mmengine 0.10.7})
MMENGINE_CASES = {
    'rle_original': (50, 420, 4e-3, [
        dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=1000),
        dict(type='CosineAnnealingLR', eta_min=4e-3 * 0.05, begin=210, end=420, T_max=210, by_epoch=True,
             convert_to_iter_based=True)], {
        0: 4e-08, 1: 4.043963963963964e-06, 2: 8.047927927927926e-06, 500: 0.0020020219819819737,
        999: 0.003999999999999968, 1000: 0.003999999999999968, 10499: 0.003999999999999968,
        10500: 0.003999999999999968, 10501: 0.0039999999149557585, 10550: 0.003999787393439478,
        15000: 0.002522789774516837, 15750: 0.0020999999999998568, 20999: 0.00020000008504420956}),
    'heatmap_multistep': (7, 12, 5e-4, [
        dict(type='LinearLR', begin=0, end=20, start_factor=0.001, by_epoch=False),
        dict(type='MultiStepLR', begin=0, end=12, milestones=[8, 10], gamma=0.1, by_epoch=True)], {
        0: 5e-07, 1: 2.6789473684210526e-05, 10: 0.00026339473684210525, 19: 0.0005, 20: 0.0005,
        55: 0.0005, 56: 5e-05, 69: 5e-05, 70: 5e-06, 83: 5e-06}),
    'exp_constant': (5, 8, 1e-2, [
        dict(type='ConstantLR', factor=0.5, begin=0, end=3, by_epoch=True),
        dict(type='ExponentialLR', gamma=0.9, begin=2, end=7, by_epoch=True)], {
        0: 0.005, 5: 0.005, 10: 0.01, 14: 0.01, 15: 0.009000000000000001, 20: 0.008100000000000001,
        30: 0.006561000000000002, 39: 0.006561000000000002}),
    'cosine_eta_min_ratio_default_end': (4, 6, 1e-3, [
        dict(type='CosineAnnealingLR', eta_min_ratio=0.1, begin=1, by_epoch=True,
             convert_to_iter_based=True)], {
        0: 0.001, 4: 0.001, 5: 0.000994459753267812, 10: 0.0008145033635316127, 20: 0.0001859423525312737,
        23: 0.00010554024673218806}),
}


@pytest.mark.parametrize('name', sorted(MMENGINE_CASES))
def test_scheduler_chain_matches_mmengine_exactly(name):
    ipe, max_epochs, lr, cfgs, expected = MMENGINE_CASES[name]
    got = lr_trace(cfgs, ipe, max_epochs, lr, set(expected))
    assert got == expected


def test_original_schedule_closed_form():
    """Linear warm-up then cosine from epoch 210 (iteration-based) agree with their closed forms."""
    ipe, base, eta_min = 50, 4e-3, 4e-3 * 0.05
    points = {0, 7, 500, 999, 3000, 10500, 10501, 12345, 15750, 20999}
    got = lr_trace(MMENGINE_CASES['rle_original'][3], ipe, 420, base, points)
    for it, lr in got.items():
        if it < 1000:
            expected = base * (1e-5 + (1 - 1e-5) * it / 999)
        elif it < 10500:
            expected = base
        else:
            t = it - 10500
            expected = eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / 10500)) / 2
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-15), it


def test_scheduler_state_dict_resumes_the_same_sequence():
    cfgs = MMENGINE_CASES['rle_original'][3]
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=4e-3)
    scheds = build_schedulers(opt, cfgs, 10, 420)
    for _ in range(2150):
        scheds[0].step()
    for _ in range(215):
        scheds[1].step()
    states = [s.state_dict() for s in scheds]
    lr_now = opt.param_groups[0]['lr']
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=4e-3)
    scheds2 = build_schedulers(opt2, cfgs, 10, 420)
    for s, st in zip(scheds2, states):
        s.load_state_dict(st)
    opt2.param_groups[0]['lr'] = lr_now  # restored by the optimizer's own state dict in training
    for _ in range(5):
        scheds[0].step()
        scheds2[0].step()
        scheds[1].step()
        scheds2[1].step()
    assert opt.param_groups[0]['lr'] == opt2.param_groups[0]['lr']


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, groups=4),
                                      nn.LayerNorm(4))
        self.head = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
        self.head[1].weight.requires_grad_(False)
        self.shared = self.head[0]


def groups_of(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return [(names[id(g['params'][0])], g['lr'], g['weight_decay']) for g in wrapper.param_groups]


def test_paramwise_cfg_matches_mmengine():
    model = Net()
    base = dict(type='AdamW', lr=0.01, weight_decay=0.05)
    w = build_optimizer(model, dict(optimizer=base, paramwise_cfg=dict(
        norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True)))
    assert groups_of(w, model) == [
        ('backbone.0.weight', 0.01, 0.05), ('backbone.0.bias', 0.01, 0.0), ('backbone.1.weight', 0.01, 0.0),
        ('backbone.1.bias', 0.01, 0.0), ('backbone.2.weight', 0.01, 0.05), ('backbone.2.bias', 0.01, 0.0),
        ('backbone.3.weight', 0.01, 0.0), ('backbone.3.bias', 0.01, 0.0), ('head.0.weight', 0.01, 0.05),
        ('head.0.bias', 0.01, 0.0), ('head.1.bias', 0.01, 0.0)]
    w = build_optimizer(model, dict(optimizer=base, paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=0.5), 'backbone.2': dict(lr_mult=0.2)},
        bias_lr_mult=2.0, dwconv_decay_mult=0.3, flat_decay_mult=0.7, bypass_duplicate=True)))
    assert groups_of(w, model) == [
        ('backbone.0.weight', 0.001, 0.025), ('backbone.0.bias', 0.001, 0.025),
        ('backbone.1.weight', 0.001, 0.025), ('backbone.1.bias', 0.001, 0.025),
        ('backbone.2.weight', 0.002, 0.05), ('backbone.2.bias', 0.002, 0.05),
        ('backbone.3.weight', 0.001, 0.025), ('backbone.3.bias', 0.001, 0.025),
        ('head.0.weight', 0.01, 0.05), ('head.0.bias', 0.02, 0.034999999999999996),
        ('head.1.bias', 0.02, 0.034999999999999996)]


def test_shared_params_need_bypass_duplicate_and_bad_keys_are_named():
    with pytest.raises(ValueError):
        build_optimizer(Net(), dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=0.0),
                                    paramwise_cfg=dict(norm_decay_mult=0.0)))
    with pytest.raises(KeyError, match='norm_decay'):
        build_optimizer(Net(), dict(optimizer=dict(type='SGD', lr=0.1), paramwise_cfg=dict(norm_decay=0.0)))
    with pytest.raises(ValueError, match='weight_decay'):
        build_optimizer(Net(), dict(optimizer=dict(type='SGD', lr=0.1),
                                    paramwise_cfg=dict(norm_decay_mult=0.0)))
    w = build_optimizer(Net(), dict(optimizer=dict(type='Adam', lr=0.1)))
    assert len(w.param_groups) == 1


def quadratic_model():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)) for _ in range(n)]


def test_accumulation_equals_one_big_batch():
    data = batches(4)
    m1, m2 = quadratic_model(), quadratic_model()
    w1 = build_optimizer(m1, dict(optimizer=dict(type='SGD', lr=0.1), accumulative_counts=2))
    w1.initialize_count_status(0, 4)
    w2 = build_optimizer(m2, dict(optimizer=dict(type='SGD', lr=0.1)))
    norms = [w1.update_params(nn.functional.mse_loss(m1(x), y)) for x, y in data]
    assert norms[0] is None and norms[1] is not None
    for k in (0, 2):
        x = torch.cat([data[k][0], data[k + 1][0]])
        y = torch.cat([data[k][1], data[k + 1][1]])
        w2.update_params(nn.functional.mse_loss(m2(x), y))
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)


def test_accumulation_divides_the_short_last_group_by_its_own_length():
    m = quadratic_model()
    w = build_optimizer(m, dict(optimizer=dict(type='SGD', lr=0.1), accumulative_counts=2))
    w.initialize_count_status(0, 5)  # groups of 2, 2 and a last one of 1
    factors, steps = [], []
    for x, _ in batches(5):
        loss = m(x).sum()
        factors.append(float(w.scale_loss(loss.detach()) / loss.detach()))
        steps.append(w.update_params(loss) is not None)
    assert factors == [0.5, 0.5, 0.5, 0.5, 1.0]
    assert steps == [False, True, False, True, True]


def test_clip_grad_norm_limits_the_step_and_returns_the_unclipped_norm():
    m = quadratic_model()
    w = build_optimizer(m, dict(optimizer=dict(type='SGD', lr=1.0),
                                clip_grad=dict(max_norm=0.01, norm_type=2)))
    before = [p.detach().clone() for p in m.parameters()]
    x, y = batches(1)[0]
    norm = w.update_params(nn.functional.mse_loss(m(x), y) * 100)
    step = torch.cat([(p - b).flatten() for p, b in zip(m.parameters(), before)])
    assert float(norm) > 0.01
    assert step.norm().item() == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_amp_wrapper_trains_and_round_trips_state(dtype):
    m = quadratic_model()
    w = build_optimizer(m, dict(type='AmpOptimWrapper', dtype=dtype, optimizer=dict(type='AdamW', lr=0.01)))
    assert isinstance(w, AmpOptimWrapper)
    losses = []
    x, y = batches(1)[0]
    for _ in range(30):
        with w.optim_context(m):
            out = m(x)
        loss = nn.functional.mse_loss(out.float(), y)
        losses.append(loss.item())
        w.update_params(loss)
    assert losses[-1] < losses[0]
    state = w.state_dict()
    assert ('loss_scaler' in state) and (bool(state['loss_scaler']) == (dtype == 'float16'))
    w2 = build_optimizer(quadratic_model(), dict(type='AmpOptimWrapper', dtype=dtype,
                                                 optimizer=dict(type='AdamW', lr=0.01)))
    w2.load_state_dict(state)
    assert w2.loss_scaler.get_scale() == w.loss_scaler.get_scale()


def test_auto_scale_lr_only_when_enabled():
    w = build_optimizer(quadratic_model(), dict(optimizer=dict(type='AdamW', lr=4e-3)))
    assert scale_lr(w, dict(base_batch_size=1024), 256) == 1.0
    assert scale_lr(w, dict(base_batch_size=1024, enable=True), 512) == 0.5
    assert w.param_groups[0]['lr'] == pytest.approx(2e-3)


def test_exp_momentum_ema_matches_formula_and_resumes():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = build_ema(model, ema_config(dict(ema=dict(type='ExpMomentumEMA', momentum=0.0002, gamma=2000,
                                                    update_buffers=True))))
    assert isinstance(ema, ExpMomentumEMA)
    w0 = model[0].weight.detach().clone()
    ema.update_parameters(model)  # first update copies
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update_parameters(model)
    m = (1 - 0.0002) * math.exp(-2 / 2000) + 0.0002
    torch.testing.assert_close(ema.module[0].weight, w0 * (1 - m) + (w0 + 1) * m)
    assert int(ema.module[1].num_batches_tracked) == 0  # integer buffers are not averaged
    clone = ExpMomentumEMA(model, gamma=2000, update_buffers=True)
    clone.load_state_dict(ema.state_dict())
    assert clone.steps == 2 and torch.equal(clone.module[0].weight, ema.module[0].weight)


def test_plain_ema_copies_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(model, momentum=0.5)
    ema.update_parameters(model)
    b0 = model[0].bias.detach().clone()
    model[1].running_mean.fill_(3.0)
    with torch.no_grad():
        model[0].bias.fill_(2.0)
    ema.update_parameters(model)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))
    torch.testing.assert_close(ema.module[0].bias, (b0 + 2.0) / 2)


def reference_ema(ema_class, model, steps, **kw):
    """The average the EMA classes computed before they kept their tensor lists: the state dicts paired
    by name at every update."""
    avg = {k: v.clone() for k, v in model.state_dict().items()}
    ema = ema_class(model, **kw)
    for step in range(steps):
        source = model.state_dict() if kw.get('update_buffers') else dict(model.named_parameters())
        for name, value in source.items():
            if step == 0:
                avg[name].copy_(value)
            elif step % ema.interval == 0 and value.dtype.is_floating_point:
                a = [avg[name]]
                ema.average_(a, [value.detach()], step)
        if not kw.get('update_buffers'):
            for name, value in model.named_buffers():
                avg[name].copy_(value)
        yield avg


@pytest.mark.parametrize('ema_class', [ExponentialMovingAverage, ExpMomentumEMA])
@pytest.mark.parametrize('update_buffers', [False, True])
def test_ema_keeps_its_tensor_lists_with_the_same_results(ema_class, update_buffers, monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    kw = dict(momentum=0.3, interval=2, update_buffers=update_buffers)
    ema = ema_class(model, **kw)
    reference = reference_ema(ema_class, model, 6, **kw)
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))  # BN running statistics move
        with monkeypatch.context() as patch:  # after the first update no state dict or parameter list
            calls = []                        # of either model is built again
            for module in (model, ema.module):
                for method in ('state_dict', 'named_parameters', 'parameters', 'buffers', 'named_buffers'):
                    real = getattr(module, method)
                    patch.setattr(module, method, lambda *a, _real=real, _m=method, _calls=calls, **k: (
                        _calls.append(_m), _real(*a, **k))[1])
            ema.update_parameters(model)
        assert bool(calls) == (step == 0), calls
        expected = next(reference)
        for name, value in ema.module.state_dict().items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=f'step {step}: {name}')
    clone = copy.deepcopy(model)  # another model: the lists are built for it
    with torch.no_grad():
        clone[0].weight.fill_(5.0)
    ema.update_parameters(clone)
    assert ema.module[0].weight.ne(expected['0.weight']).all()


def test_ema_updates_a_tensor_shared_by_two_names_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight  # one Parameter, two state-dict names (as QAT's network.* / head.*)
    ema = ExponentialMovingAverage(model, momentum=0.5, update_buffers=True)
    ema.update_parameters(model)
    with torch.no_grad():
        model[0].weight.add_(2.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module[0].weight, model[0].weight - 1.0)


def test_fused_kernels_are_chosen_on_cuda_only_and_never_override_the_config():
    assert fast_kernel_args(torch.optim.AdamW, True, {}) == {'fused': True}
    assert fast_kernel_args(torch.optim.SGD, True, {}) == {'fused': True}
    assert fast_kernel_args(torch.optim.AdamW, False, {}) == {}
    assert fast_kernel_args(torch.optim.AdamW, True, {'foreach': False}) == {}
    assert fast_kernel_args(torch.optim.RMSprop, True, {}) == {}  # no fused kernel: torch's default


def test_ema_config_converts_mmpose_ema_hook(caplog):
    first_class = dict(type='ExpMomentumEMA', momentum=0.0002, gamma=2000, update_buffers=True)
    hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, gamma=2000, update_buffers=True,
                  priority=49, strict_load=False), dict(type='mmdet.PipelineSwitchHook', switch_epoch=390)]
    project_logger = logging.getLogger(LOGGER_NAME)  # does not propagate once train.py set it up
    project_logger.addHandler(caplog.handler)
    try:
        assert ema_config(dict(custom_hooks=hooks)) == first_class
    finally:
        project_logger.removeHandler(caplog.handler)
    assert 'custom_hooks: mmdet.PipelineSwitchHook is ignored' in caplog.text  # a dict built in code
    assert ema_config(dict(ema=dict(momentum=0.001))) == dict(type='ExponentialMovingAverage', momentum=0.001)
    assert ema_config(dict(custom_hooks=[dict(type='EMAHook')])) == dict(type='ExponentialMovingAverage')
    assert ema_config({}) is None and build_ema(nn.Linear(2, 2), None) is None
    with pytest.raises(ValueError, match='both ema and custom_hooks EMAHook'):
        ema_config(dict(ema=first_class, custom_hooks=hooks))
    with pytest.raises(ValueError, match='begin_iter'):
        ema_config(dict(custom_hooks=[dict(type='EMAHook', begin_iter=10)]))
    with pytest.raises(KeyError, match="'NoSuchEMA' is not registered in the EMA model registry"):
        build_ema(nn.Linear(2, 2), ema_config(dict(ema=dict(type='NoSuchEMA'))))


def test_optim_info_reaches_train_log_once(tmp_path):
    """optim logs under the project logger: its INFO lines (the lr scaling, logged nowhere else) reach
    train.log, once."""
    get_logger(tmp_path / 'train.log')
    try:
        wrapper = build_optimizer(nn.Linear(2, 2), dict(optimizer=dict(type='SGD', lr=0.1)))
        assert scale_lr(wrapper, dict(base_batch_size=8, enable=True), 16) == 2.0
    finally:
        clear_project_logger()
    log = (tmp_path / 'train.log').read_text()
    assert log.count('auto_scale_lr: lr x 2 (total batch 16, base 8)') == 1, log
