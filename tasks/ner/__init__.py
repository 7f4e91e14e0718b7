"""Entity recognition as multi-label token classification (task ``docred_ner``, ``token_ner``)."""
