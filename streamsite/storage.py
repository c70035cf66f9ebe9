"""Static files storage for production: compressed, hashed names, hashed module imports."""

from servestatic.storage import CompressedManifestStaticFilesStorage


class ManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """ServeStatic's compressed manifest storage that also rewrites ES module imports.

    The browser clients are ES modules importing each other (``./reconnect.js``). Without
    this, the hashed ``notifications.<hash>.js`` would import the unhashed names, which are
    served without far-future caching and can go stale next to a new deploy.
    """

    support_js_module_import_aggregation = True
