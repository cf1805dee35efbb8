"""Neural-network building blocks shared by the agents: MLPs, running normalizers, observation
encoders (one per group: MLP for flat groups, CNN for uint8 images) and actor-critic models that
read lists of observation groups."""

from rlkd.nn.encoders import ImageEncoder, ObservationEncoder, group_specs
from rlkd.nn.mlp import init_orthogonal, mlp
from rlkd.nn.normalizer import DiscountedReturnNormalizer, RunningMeanStd
from rlkd.nn.policy import ActorCritic

__all__ = ["mlp", "init_orthogonal", "RunningMeanStd", "DiscountedReturnNormalizer",
           "ObservationEncoder", "ImageEncoder", "group_specs", "ActorCritic"]
