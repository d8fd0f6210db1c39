"""Datasets: schema and validation, parquet io, splits, normalisation, synthetic OHLC, UCR adapter.

Public API (docs/CONTRACTS.md): `load_dataset`, `Dataset`, `validate_dataset`,
`ValidationReport`, `DataValidationError`; generators `generate_synthetic` and `convert_ucr`
(the latter imported lazily: sktime is slow to import).
"""

from moola.data.dataset import Dataset, load_dataset
from moola.data.normalize import NORMALIZATIONS, normalize, window_zscore
from moola.data.schema import DataError, DataValidationError, ValidationReport
from moola.data.synth import generate_synthetic
from moola.data.validate import validate_dataset

__all__ = [
    "Dataset",
    "DataError",
    "DataValidationError",
    "NORMALIZATIONS",
    "ValidationReport",
    "convert_ucr",
    "generate_synthetic",
    "load_dataset",
    "normalize",
    "validate_dataset",
    "window_zscore",
]


def convert_ucr(name, out_dir):
    """Convert a UCR/UEA dataset bundled with sktime (see `moola.data.ucr.convert_ucr`)."""
    from moola.data.ucr import convert_ucr as _convert

    return _convert(name, out_dir)
