# aibx: receive a file on stdin
# Run by the WinRM transport as powershell -EncodedCommand; aibx replaces __AIBX_PATH__ and __AIBX_SHA256__
# (single-quoted PowerShell strings) and streams the content on stdin as base64 lines.
# The content is written next to the destination, its SHA-256 is checked on disk, and only then is it moved into
# place: a failed or corrupted upload never leaves a partial file at the destination.
# Exit codes: 0 ok, 3 parent directory missing, 4 checksum mismatch, 5 other error, 6 destination is a directory.
begin {
    $ErrorActionPreference = 'Stop'
    $ProgressPreference = 'SilentlyContinue'
    $path = '__AIBX_PATH__'
    $sha256 = '__AIBX_SHA256__'
    $part = $path + '.aibx-part'
    $out = $null
    function Stop-Upload([int] $Code, [string] $Message) {
        if ($script:out) { $script:out.Dispose() }
        if ([IO.File]::Exists($script:part)) { [IO.File]::Delete($script:part) }
        [Console]::Error.WriteLine("AIBX-UPLOAD-ERROR $Message")
        exit $Code
    }
    $dir = [IO.Path]::GetDirectoryName($path)
    if ($dir -and -not [IO.Directory]::Exists($dir)) { Stop-Upload 3 "parent directory does not exist: $dir" }
    if ([IO.Directory]::Exists($path)) { Stop-Upload 6 'the destination is a directory' }
    try { $out = [IO.File]::Create($part) } catch { Stop-Upload 5 $_.Exception.Message }
}
process {
    if ($_) {
        try {
            $bytes = [Convert]::FromBase64String($_)
            $out.Write($bytes, 0, $bytes.Length)
        } catch { Stop-Upload 5 $_.Exception.Message }
    }
}
end {
    try {
        $out.Dispose()
        $out = $null
        $hasher = [Security.Cryptography.SHA256]::Create()
        $stream = [IO.File]::OpenRead($part)
        try { $got = -join ($hasher.ComputeHash($stream) | ForEach-Object { $_.ToString('x2') }) } finally { $stream.Dispose() }
        if ($got -ne $sha256) { Stop-Upload 4 "sha256 mismatch: got $got, expected $sha256" }
        if ([IO.File]::Exists($path)) { [IO.File]::Delete($path) }
        [IO.File]::Move($part, $path)
    } catch { Stop-Upload 5 $_.Exception.Message }
    [Console]::Out.WriteLine("AIBX-UPLOAD-OK $got")
}
