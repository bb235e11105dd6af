"""PatchCore: coreset selection, chunked nearest neighbours, the paper's re-weighting, state-dict round trip."""

from __future__ import annotations

import pytest
import torch

from grdnet.config import RunConfig
from grdnet.models import build_model
from grdnet.training.recipes.patchcore import chunked_coreset, greedy_coreset

pytest.importorskip("efficientnet_lite_pytorch")


def _model(**options) -> torch.nn.Module:
    cfg = RunConfig.for_model("patchcore", {"data": {"image_size": [64, 64]}, "model": options})
    return build_model(cfg).eval()


def test_greedy_coreset_takes_one_point_per_cluster_and_chunks_keep_the_ratio():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = (centres[:, None, :] + 0.1 * torch.randn(4, 50, 2, generator=generator)).reshape(-1, 2)
    chosen = greedy_coreset(points, 4, generator)
    assert sorted((chosen // 50).tolist()) == [0, 1, 2, 3]

    features = torch.randn(1000, 16, generator=generator)
    kept = chunked_coreset(features, 0.1, projection_dim=8, chunk=300, generator=generator)
    assert len(kept) == 30 + 30 + 30 + 10 and len(set(kept.tolist())) == len(kept)


def test_nearest_neighbours_in_chunks_match_brute_force(monkeypatch):
    import grdnet.models.feature_maps as feature_maps

    model = _model()
    generator = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(500, model.feature_dim, generator=generator), torch.randn(70, model.feature_dim, generator=generator)
    model.set_memory_bank(bank, radius=1.0)
    monkeypatch.setattr(feature_maps, "QUERY_ELEMENTS", 500 * 16)  # 16 queries per chunk
    distances, indices = model.nearest(queries)
    expected = torch.cdist(queries, bank).min(dim=1)
    assert torch.equal(indices, expected.indices)
    assert torch.allclose(distances, expected.values, atol=1e-3)


def test_image_score_is_the_reweighted_largest_patch_distance():
    model = _model(neighbours=3)
    generator = torch.Generator().manual_seed(2)
    bank = torch.randn(40, model.feature_dim, generator=generator)
    model.set_memory_bank(bank, radius=1.0)
    features = torch.randn(1, 6, model.feature_dim, generator=generator)
    distances, indices = model.nearest(features[0])
    score = model.reweighted_score(features, distances[None], indices[None])
    worst = int(distances.argmax())
    anchor = bank[indices[worst]]
    support = torch.cdist(anchor[None], bank)[0].topk(3, largest=False).indices
    to_support = (features[0, worst] - bank[support]).norm(dim=1)
    weight = 1 - torch.exp(to_support[0]) / torch.exp(to_support).sum()
    assert torch.allclose(score, weight * distances.max(), atol=1e-4)


def test_a_fitted_bank_of_any_size_round_trips_and_an_unseen_patch_scores_higher():
    model = _model()
    normal = torch.rand(6, 3, 64, 64) * 0.1 + 0.45
    patches = model.patches(normal)
    model.set_memory_bank(patches.permute(0, 2, 3, 1).reshape(-1, model.feature_dim), radius=0.5)
    defect = normal[:1].clone()
    defect[:, :, 20:36, 20:36] = torch.rand(1, 3, 16, 16)
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert fresh.memory_bank.shape == model.memory_bank.shape
    out = fresh(torch.cat([normal[:1], defect]))
    assert out["anomaly_map"].shape == (2, 1, 64, 64) and 0 <= float(out["anomaly_map"].min())
    assert float(out["anomaly_map"].max()) < 1 and float(out["score"][1]) > float(out["score"][0])
    hot = out["anomaly_map"][1, 0]
    assert float(hot[20:36, 20:36].mean()) > float(hot[48:, 48:].mean())
