"""A consistency student exports with its guidance embedding as a fourth input, `timestep_cond`."""

from compress.distill import with_guidance_embedding
from exporters import export
from helpers import make_tiny_unet


def test_consistency_student_exports_with_timestep_cond(tmp_path):
    with_guidance_embedding(make_tiny_unet(), None).save_pretrained(tmp_path / "student" / "unet")
    artifact = export(tmp_path / "student", "onnx", tmp_path / "onnx")
    assert artifact.input_names == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    assert artifact.input_shapes[-1] == [1, 256]
    assert artifact.validated is True
