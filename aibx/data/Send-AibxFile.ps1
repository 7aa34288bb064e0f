# aibx: send a file on stdout
# Run by the WinRM transport as powershell -EncodedCommand; aibx replaces __AIBX_PATH__ (a single-quoted
# PowerShell string). The file goes out as base64 lines of 48 KiB each, so memory stays flat for large files.
# Exit codes: 0 ok, 2 not found, 5 other error.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$path = '__AIBX_PATH__'
try {
    if (-not [IO.File]::Exists($path)) {
        [Console]::Error.WriteLine("AIBX-DOWNLOAD-ERROR file not found: $path")
        exit 2
    }
    $stream = [IO.File]::OpenRead($path)
    try {
        $buffer = New-Object byte[] 49152
        while (($n = $stream.Read($buffer, 0, $buffer.Length)) -gt 0) {
            [Console]::Out.WriteLine([Convert]::ToBase64String($buffer, 0, $n))
        }
    } finally { $stream.Dispose() }
} catch {
    [Console]::Error.WriteLine('AIBX-DOWNLOAD-ERROR ' + $_.Exception.Message)
    exit 5
}
