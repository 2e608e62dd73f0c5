"""The test suite; its folders mirror DeepDenoiseLib's subpackages."""
