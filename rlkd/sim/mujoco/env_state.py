"""Exact resume of a task simulated by :class:`~rlkd.sim.mujoco.MujocoBatch`."""

from __future__ import annotations

from typing import Any


class MujocoEnvState:
    """Mixin for a :class:`~rlkd.core.env.BatchedEnv` whose physics is ``self.sim`` (a
    ``MujocoBatch``): its ``state_dict`` adds MuJoCo's full integration state of every world
    (``mjSTATE_INTEGRATION``, solver warm start included), so a resumed env steps on bitwise.
    List it before ``BatchedEnv`` in the bases."""

    def state_dict(self) -> dict[str, Any]:
        """The base env state plus ``"sim"``: ``(num_envs, nstate)`` MuJoCo states."""
        state = super().state_dict()
        state["sim"] = self.sim.get_state().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "sim" not in state:
            raise ValueError("env state has no 'sim' entry (MuJoCo state): was it saved by "
                             f"another task than {type(self).__name__}?")
        super().load_state_dict(state)
        self.sim.set_state(state["sim"])
