"""Models: the ResNet-18 builder and its classification head, pretrained initialisation, deployable exports."""
