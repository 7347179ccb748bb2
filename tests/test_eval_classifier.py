from compress.data.digits import load_digits
from compress.evaluate.classifier import classify, load_classifier


def test_shipped_classifier_reads_held_out_digits():
    heldout = load_digits("heldout")
    predicted, features = classify(heldout.images)
    assert (predicted == heldout.labels).float().mean().item() >= 0.97
    assert features.shape == (len(heldout.labels), load_classifier().feature_dim)
