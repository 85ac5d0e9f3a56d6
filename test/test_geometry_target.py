"""The grounded target's 3D (geometry/target.py) on ray-cast RGB-D scenes with known geometry
(rgbd_shapes.py): depth holes, flying pixels across the silhouette, 32FC1 metres and 16UC1 mm."""
import numpy as np
import pytest
import torch

from rgbd_shapes import box_scene, cylinder_scene, sphere_scene, to_16uc1
from textregion_ros.geometry import RigidTransform, region_stats, target_geometry
from textregion_ros.geometry.transform import quaternion_xyzw

BOXES = [  # two sides and the top in view: every extent is observable from one viewpoint
    dict(),
    dict(yaw=-60, pitch=-35, size=(0.3, 0.2, 0.1), centre=(-0.1, 0.05, 1.4)),
    dict(yaw=45, pitch=-30, centre=(0.0, 0.0, 0.8), bleed=3, seed=4),
    dict(yaw=-30, pitch=-20, centre=(0.15, -0.05, 1.6), seed=7),
]


def depth_as(scene, encoding):
    if encoding == "32FC1":
        return torch.from_numpy(scene.depth_m)
    return torch.from_numpy(to_16uc1(scene.depth_m).astype(np.float32) / 1000.0)  # 0 = no reading


def axis_errors_deg(true_rows, est_cols):
    cos = np.abs(true_rows @ est_cols)  # (true i, estimated j)
    return [float(np.degrees(np.arccos(min(1.0, cos[i].max())))) for i in range(3)], \
        [int(cos[i].argmax()) for i in range(3)]


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("kw", BOXES)
def test_box_centre_extent_axes_and_surface(kw, encoding):
    s = box_scene(**kw)
    g = target_geometry(torch.from_numpy(s.mask), depth_as(s, encoding), s.K)
    errs, match = axis_errors_deg(s.axes, g.obb_axes.numpy())
    assert max(errs) <= 5.0, errs
    assert np.linalg.norm(g.obb_centre.numpy() - s.centre) <= 0.005
    assert np.abs(g.obb_size.numpy()[match] - s.size).max() <= 0.010
    d = s.surface_distance(g.points.double().numpy())
    assert np.median(d) <= 0.002 and np.percentile(d, 99) <= 0.01  # flying pixels are gone
    lo, hi = g.aabb_min.numpy(), g.aabb_max.numpy()
    assert (lo <= g.centroid.numpy()).all() and (g.centroid.numpy() <= hi).all()


def test_flying_pixels_would_ruin_the_box_without_cleaning():
    """The comparison above sees the cleaning: raw mask points reach the far wall."""
    s = box_scene()
    z = torch.from_numpy(s.depth_m)[torch.from_numpy(s.mask)]
    assert float(torch.nanquantile(z, 0.99)) > s.centre[2] + 0.3


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_sphere_cloud_on_the_surface_and_extent_across_the_view(encoding):
    s = sphere_scene()
    g = target_geometry(torch.from_numpy(s.mask), depth_as(s, encoding), s.K)
    d = s.surface_distance(g.points.double().numpy())
    assert np.median(d) <= 0.002
    # A sphere's every side is a grazing silhouette, the worst case for the lost edge band: 12 mm.
    width, height = g.aabb_max.numpy()[:2] - g.aabb_min.numpy()[:2]
    assert abs(g.obb_size[0].item() - 0.18) <= 0.012 and abs(g.obb_size[2].item() - 0.18) <= 0.012
    assert width <= 0.18 and height <= 0.18  # the raw cloud never exceeds the object


def test_cylinder_cloud_height_and_width():
    s = cylinder_scene()
    g = target_geometry(torch.from_numpy(s.mask), torch.from_numpy(s.depth_m), s.K)
    assert np.median(s.surface_distance(g.points.double().numpy())) <= 0.002
    assert abs(g.obb_size[2].item() - 0.2) <= 0.01  # z = up: the height
    assert abs(g.obb_size[0].item() - 0.1) <= 0.01  # the diameter across the view
    up = g.obb_axes[:, 2].numpy()
    assert up @ np.array([0, -1.0, 0]) > 0.99


def test_pose_convention_is_right_handed_z_up_x_away():
    s = box_scene()
    g = target_geometry(torch.from_numpy(s.mask), torch.from_numpy(s.depth_m), s.K)
    A = g.obb_axes.numpy()
    assert np.allclose(A.T @ A, np.eye(3), atol=1e-4) and np.linalg.det(A) > 0.999
    assert A[:, 2] @ np.array([0, -1.0, 0]) > 0.8  # z: the box axis nearest image up
    assert A[:, 0] @ g.obb_centre.numpy() >= 0  # x away from the camera
    assert g.obb_size[0] >= g.obb_size[1]  # x the longer of the two others
    q = quaternion_xyzw(A)
    assert abs(np.linalg.norm(q) - 1) < 1e-9


def test_quaternion_closed_form_is_scipys_rotation():
    """quaternion_xyzw's closed form against scipy's Rotation (up to sign), on random rotations, each half-turn
    branch, and axes a float32 OBB gives (orthonormal to 1e-7); a reflection is still refused as scipy does."""
    from scipy.spatial.transform import Rotation

    mats = list(Rotation.random(500, random_state=3).as_matrix())
    mats += [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    mats += [m.astype(np.float32) for m in mats[:20]]
    for m in mats:
        q, ref = quaternion_xyzw(m), Rotation.from_matrix(np.asarray(m, np.float64)).as_quat()
        assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-6, (m, q, ref)
    with pytest.raises(ValueError):
        quaternion_xyzw(np.diag([1.0, 1, -1]))


def test_cap_on_points_and_too_few_points():
    s = box_scene()
    g = target_geometry(torch.from_numpy(s.mask), torch.from_numpy(s.depth_m), s.K, max_points=500)
    assert len(g) == 500
    tiny = np.zeros_like(s.mask)
    tiny[240, 320] = True
    assert target_geometry(torch.from_numpy(tiny), torch.from_numpy(s.depth_m), s.K) is None


def test_rigid_transform_by_hand():
    # 90 degrees about z, then 1 m along x: (1, 0, 0) -> (0, 1, 0) -> (1, 1, 0).
    T = RigidTransform.from_quaternion([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)], [1.0, 0, 0])
    assert np.allclose(T.points(np.array([[1.0, 0, 0], [0, 0, 2.0]])), [[1, 1, 0], [1, 0, 2]])
    pos, axes = T.pose(np.array([0.0, 1.0, 0]), np.eye(3))
    assert np.allclose(pos, [0, 0, 0]) and np.allclose(axes, [[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    inv = RigidTransform(T.R.T, -T.R.T @ T.t)
    both = T.then(inv)
    assert np.allclose(both.R, np.eye(3)) and np.allclose(both.t, 0)
    with pytest.raises(ValueError):
        RigidTransform.from_quaternion([0, 0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError):
        RigidTransform.from_quaternion([0, 0, 0, 1], [float("nan"), 0, 0])


def test_region_extent_by_hand():
    """A flat 100 x 50 px patch at 2 m with f = 500: 0.4 x 0.2 m (between the 2nd and 98th percentile)."""
    K = torch.tensor([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    depth = torch.full((240, 320), 2.0)
    m = torch.zeros(1, 240, 320, dtype=torch.bool)
    m[0, 100:150, 100:200] = True
    med, size = region_stats(m, depth, K)
    assert size[0, 0].item() == pytest.approx(0.4 * 0.96, abs=0.01)
    assert size[0, 1].item() == pytest.approx(0.2 * 0.96, abs=0.01)
    assert size[0, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert med[0, 2].item() == 2.0
