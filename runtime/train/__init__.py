"""unroll.train: train generated networks.

    import unroll
    task = unroll.train.sparse_coding()                       # Chen et al.'s synthetic setting
    net = unroll.train.build_net("lista_cp", task, layers=16)  # carries its recipe for checkpoints
    result = unroll.train.train(net, task, protocol="stagewise", out_dir="runs/lista_cp")

Protocols: end-to-end, stage-wise (LISTA-CP reference), deep supervision (TrainConfig); composed
networks: Chain and train_composed.  Command line: `unrollc train SPEC [--task NAME] -o DIR` (without --task: the shipped spec's own catalog
task, `unroll.train.catalog_task(SPEC)`).
"""

from unroll.runtime.layer_views import join_layers, split_layers

from . import plots
from .catalog import catalog_task
from .checkpoint import CheckpointMismatch, Recipe, build_net, load_checkpoint, recipe, save_checkpoint
from .composed import Chain, train_composed
from .layers import LayerRates, depth, layer_parameters
from .metrics import beta_divergence, mse, nmse, nmse_db, nrmse, psnr, sq_error, ti_mse
from .tasks import (
    TASKS,
    Task,
    blind_deblur,
    compressive_mri,
    from_loader,
    from_tensors,
    get_task,
    nmf_separation,
    sparse_coding,
)
from .trainer import TrainConfig, Trainer, train

__all__ = [
    "TASKS", "Chain", "CheckpointMismatch", "LayerRates", "Recipe", "Task", "TrainConfig", "Trainer",
    "beta_divergence", "blind_deblur", "build_net", "catalog_task", "compressive_mri", "depth", "from_loader", "from_tensors",
    "get_task", "join_layers", "layer_parameters", "load_checkpoint", "mse", "nmf_separation", "nmse", "nmse_db", "nrmse",
    "plots", "psnr", "recipe", "save_checkpoint", "sparse_coding", "split_layers", "sq_error", "ti_mse", "train",
    "train_composed",
]
