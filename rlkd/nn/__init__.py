"""Neural-network building blocks shared by the agents: MLPs and running normalizers."""

from rlkd.nn.mlp import init_orthogonal, mlp
from rlkd.nn.normalizer import DiscountedReturnNormalizer, RunningMeanStd

__all__ = ["mlp", "init_orthogonal", "RunningMeanStd", "DiscountedReturnNormalizer"]
