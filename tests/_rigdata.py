"""A smooth random dance on the rig, shared by the rig and rig-VAE tests."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from momu_live.models import rig as R
from momu_live.models.skeleton import JOINT_INDEX as J

FPS = 25.0
BONES_M = np.array([0.12, 0.12, 0.18, 0.15, 0.30, 0.25, 0.15, 0.30, 0.25, 0.10, 0.45, 0.42, 0.16, 0.10, 0.45, 0.42, 0.16])


def random_rig(T: int = 60, seed: int = 0, fps: float = FPS, straight_spine: bool = False) -> R.RigMotion:
    """A smooth random dance on the rig: joint rotations within ~50 deg of the T-pose, a turning, walking root."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fps
    rotvec = np.zeros((T, 18, 3))
    for j in R.ROTATED_JOINTS:
        amp, freq, ph = rng.uniform(0.1, 0.9, 3), rng.uniform(0.2, 1.5, 3), rng.uniform(0, 6.3, 3)
        rotvec[:, j] = amp * np.sin(2 * np.pi * freq * t[:, None] + ph)
    rotvec[:, 0, 1] = 1.3 * t  # turning about y
    if straight_spine:  # the spine joint mid-way between pelvis and neck, as DwM's derived spine
        rotvec[:, J["spine"]] = 0.0
    rotvec[:, J["l_knee"], 0] = rotvec[:, J["r_knee"], 0] = 0.6 + 0.4 * np.sin(3 * t)  # bent knees
    mats = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(T, 18, 3, 3)
    root = np.stack([0.4 * t, 0.9 + 0.05 * np.sin(4 * t), 0.2 * np.sin(t)], axis=-1)
    return R.RigMotion(rot6d=R.matrix_to_rot6d_np(mats), root=root, bones=BONES_M, fps=fps)
